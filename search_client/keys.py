"""Redis key names shared by the worker (writer) and search (reader).

- `{prefix}:score:{model_version}:{image_id}` — hash: one image's record under one model version.
- `{prefix}:active_version` — string: the model version whose scores search should read.
- `{prefix}:published:{image_id}` — string "1"/"0": the image's exclusion state as the active version last
  published it (whichever version that was); the writer's, not a reader's, key.
- `{prefix}:switches` — list, newest first: one JSON entry per change of the active version
  (`{"who", "at", "from", "to"}`), written by `alocc promote` and `alocc rollback`.
- `{prefix}:replay:{group}` — hash: a replay group's offset range (`alocc replay`).
"""

from __future__ import annotations

ACTIVE_VERSION_KEY = "active_version"


class KeyLayout:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        """Create the layout for keys starting with `prefix:`."""
        self.prefix = prefix

    @property
    def records_prefix(self) -> str:
        """What every record key starts with: `{prefix}:score:`, then the version, ':' and the image id."""
        return f"{self.prefix}:score:"

    def record(self, model_version: str, image_id: str) -> str:
        """Key of one image's hash under one model version."""
        return f"{self.records_prefix}{model_version}:{image_id}"

    def published_state(self, image_id: str) -> str:
        """Key of an image's last published exclusion state (written by the active version's workers)."""
        return f"{self.prefix}:published:{image_id}"

    @property
    def active_version(self) -> str:
        """Key of the active model version pointer."""
        return f"{self.prefix}:{ACTIVE_VERSION_KEY}"

    @property
    def switch_log(self) -> str:
        """Key of the list of active-version switches, newest first."""
        return f"{self.prefix}:switches"

    def version_of(self, record_key: str) -> str | None:
        """The model version of a record key (versions hold no ':'), or None for another key."""
        head = self.records_prefix
        if not record_key.startswith(head):
            return None
        version, sep, _image = record_key[len(head) :].partition(":")
        return version if sep else None
