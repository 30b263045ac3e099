"""structlog configuration: JSON lines (or console) on stderr, with context bound per event.

Records of the standard `logging` module are rendered the same way, so what libraries log comes out as
the worker's own lines. The Kafka clients are given `kafka_client_logger()` (`KafkaSettings`): without
it, librdkafka writes its own raw lines (`%4|1796588634.377|GETPID|rdkafka#producer-2| ...`) to stderr,
between the JSON lines that a log pipeline parses.
"""

from __future__ import annotations

import logging
import sys

import structlog

# The standard-library logger the Kafka clients log through (confluent-kafka's `logger` property).
KAFKA_CLIENT_LOGGER = "librdkafka"


def kafka_client_logger() -> logging.Logger:
    """The logger for a Kafka client's `logger` property: its lines are served by the client's poll calls
    and rendered as this process's log lines."""
    return logging.getLogger(KAFKA_CLIENT_LOGGER)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Configure structlog, and the standard `logging` root to render through it, once per process (called
    by the CLI, never at import time)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                timestamper,
                structlog.processors.format_exc_info,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
