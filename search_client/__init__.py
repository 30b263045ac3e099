"""What search needs to read ALOCC scores from Redis: the key layout and a batch reader.

This package depends on `redis` only (no torch, no Kafka), so the search service and operators' tools
can install and import it without the model. The worker writes with the same `KeyLayout`, which is
how the two sides stay in agreement.
"""

from search_client.keys import ACTIVE_VERSION_KEY, KeyLayout
from search_client.reader import ScoreReader, connect

__all__ = ["ACTIVE_VERSION_KEY", "KeyLayout", "ScoreReader", "connect"]
