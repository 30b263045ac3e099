"""Log lines: the worker's own and librdkafka's come out in one format."""

from __future__ import annotations

import json
import subprocess
import sys

from worker.logs import KAFKA_CLIENT_LOGGER

# A process that logs as the worker does: a real librdkafka consumer, from the worker's settings, against a
# port nothing listens on (it logs the refused connection), then a line of the worker's own.
_PROGRAM = """
import time
import structlog
from confluent_kafka import Consumer
from worker.logs import configure_logging
from worker.settings import KafkaSettings

configure_logging("INFO", "json")
consumer = Consumer(KafkaSettings(bootstrap_servers="127.0.0.1:1").consumer_config())
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    consumer.poll(0.2)  # the client's log lines are served by its poll calls
consumer.close()
structlog.get_logger().info("the worker's own line")
"""


def test_librdkafka_lines_come_out_as_the_workers_json_lines() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )

    # Every line parses: none is in librdkafka's raw "%3|1796588634.377|FAIL|rdkafka#consumer-1| ..." format.
    records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    kafka = [record for record in records if record.get("logger") == KAFKA_CLIENT_LOGGER]
    assert any("Connect to ipv4#127.0.0.1:1 failed" in str(record["event"]) for record in kafka)
    assert all(record["level"] in {"error", "warning", "info"} and "timestamp" in record for record in kafka)
    assert any(record["event"] == "the worker's own line" for record in records)
