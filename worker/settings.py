"""The one settings root of the worker: environment variables `ALOCC_*`, nested with `__`.

Only `Settings` reads the environment. Everything below it takes the plain typed sub-objects
(`KafkaSettings`, `FetchSettings`, ...) or plain arguments. Secrets are `SecretStr` and are revealed
only where a client library needs them (`KafkaSettings.librdkafka_config`, `RedisSettings.url`).

Example: `ALOCC_KAFKA__BOOTSTRAP_SERVERS=broker:9092 ALOCC_BATCH__MAX_SIZE=64 alocc worker`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(BaseModel):
    """Kafka connection, consumer group and delivery settings."""

    model_config = _FROZEN

    bootstrap_servers: str = Field(default="localhost:9092", description="Comma-separated host:port list.")
    group_id: str = Field(default="alocc-worker", description="Consumer group shared by all workers.")
    client_id: str = Field(
        default="alocc-worker", description="Client id sent to the broker (shows in broker logs)."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="librdkafka security.protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = Field(
        default=None, description="librdkafka sasl.mechanism."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (secret).")
    ssl_ca_location: str | None = Field(default=None, description="CA bundle file for SSL/SASL_SSL.")
    ssl_certificate_location: str | None = Field(default=None, description="Client certificate (mTLS).")
    ssl_key_location: str | None = Field(default=None, description="Client private key (mTLS).")
    ssl_key_password: SecretStr | None = Field(default=None, description="Private key password (secret).")
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="Raw librdkafka properties added to both clients (JSON object in the environment).",
    )
    transactional: bool = Field(
        default=True,
        description="Exactly-once: exclusion/dead-letter events and offsets in one transaction. "
        "False = idempotent at-least-once (produce, flush, then commit offsets).",
    )
    transactional_id: str = Field(
        default_factory=lambda: f"alocc-worker-{socket.gethostname()}",
        description="Stable per worker (pod); two workers on one host need different ids.",
    )
    transaction_timeout_ms: int = Field(
        default=60_000, ge=1000, description="Broker aborts a transaction older than this."
    )
    session_timeout_ms: int = Field(default=45_000, ge=6000, description="Group membership timeout.")
    max_poll_interval_ms: int = Field(
        default=300_000, ge=10_000, description="The loop polls every poll timeout, so this never expires."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a new consumer group starts."
    )
    poll_timeout_s: float = Field(
        default=0.2, gt=0, le=1.0, description="Longest single poll; keeps signals responsive."
    )

    def librdkafka_config(self) -> dict[str, str | int | bool]:
        """The connection and security properties common to consumer and producer (secrets revealed)."""
        config: dict[str, str | int | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        optional: dict[str, str | SecretStr | None] = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        for key, value in optional.items():
            if value is not None:
                config[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
        config.update(self.extra)
        return config

    def consumer_config(self) -> dict[str, str | int | bool]:
        """librdkafka consumer properties: manual commits, cooperative-sticky rebalancing."""
        return {
            **self.librdkafka_config(),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.auto_offset_reset,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": self.session_timeout_ms,
            "max.poll.interval.ms": self.max_poll_interval_ms,
            # Outputs are transactional; a worker that re-reads its own outputs must not see aborted ones.
            "isolation.level": "read_committed",
            # Input events are small JSON; a small prefetch keeps memory flat under backpressure.
            "queued.max.messages.kbytes": 8192,
        }

    def producer_config(self) -> dict[str, str | int | bool]:
        """librdkafka producer properties: idempotent always, transactional when `transactional`."""
        config: dict[str, str | int | bool] = {
            **self.librdkafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
        }
        if self.transactional:
            config["transactional.id"] = self.transactional_id
            config["transaction.timeout.ms"] = self.transaction_timeout_ms
        return config


class RedisSettings(BaseModel):
    """Where scores are cached for search."""

    model_config = _FROZEN

    url: SecretStr = Field(
        default=SecretStr("redis://localhost:6379/0"),
        description="redis:// or rediss:// URL (may carry a password).",
    )
    key_prefix: str = Field(default="alocc", description="Prefix of every key the worker writes.")
    ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60, description="Lifetime of a score record.")
    active_version_policy: Literal["if_missing", "always", "never"] = Field(
        default="if_missing",
        description="Whether the worker points the active-version key at its model on start: only when "
        "unset, always (promote on deploy), or never (promotion is done elsewhere).",
    )
    socket_timeout_s: float = Field(default=2.0, gt=0, description="Redis connect and command timeout.")
    write_attempts: int = Field(
        default=3, ge=1, description="Tries for one batch write before the worker stops."
    )


class TopicsSettings(BaseModel):
    """Topic names."""

    model_config = _FROZEN

    input: str = Field(default="images.uploaded", description="Image-uploaded events (input).")
    exclusions: str = Field(default="images.exclusions", description="Exclusion events (compacted).")
    dead_letter: str = Field(default="images.uploaded.dlq", description="Dead-letter records.")


class BatchSettings(BaseModel):
    """Micro-batching and backpressure."""

    model_config = _FROZEN

    max_size: int = Field(default=32, ge=1, description="Most images scored in one model call.")
    start_when_idle: bool = Field(
        default=True,
        description=(
            "Start a batch as soon as the device is free, with the images ready (batches grow by "
            "themselves while the device is busy; lowest latency). false = wait for a full batch or "
            "max_wait_ms while images are still being prepared."
        ),
    )
    max_wait_ms: int = Field(
        default=50,
        ge=0,
        description="Longest a decoded image waits for its batch to fill (with start_when_idle=false).",
    )
    max_in_flight: int = Field(
        default=1024,
        ge=1,
        description="Most events between poll and commit; intake pauses above it (bounds memory).",
    )
    commit_interval_ms: int = Field(
        default=100,
        ge=0,
        description=(
            "Least time between commits while batches keep the device busy (otherwise a scored batch "
            "commits at once)."
        ),
    )


class FetchSettings(BaseModel):
    """Downloading images safely."""

    model_config = _FROZEN

    allow_private_networks: bool = Field(
        default=False,
        description="Allow loopback/private targets (tests, local demo); link-local/metadata stay refused.",
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(), description="If set, only these hosts; an entry starting with '.' matches subdomains."
    )
    allow_file_urls: bool = Field(
        default=False, description="Allow file:// URLs below `file_root` (replays, tests)."
    )
    file_root: Path | None = Field(default=None, description="Folder that file:// URLs must stay inside.")
    max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Byte cap per image, counted while streaming."
    )
    connect_timeout_s: float = Field(default=3.0, gt=0, description="TCP/TLS connect timeout per request.")
    read_timeout_s: float = Field(default=5.0, gt=0, description="Longest wait for the next bytes.")
    total_timeout_s: float = Field(
        default=15.0, gt=0, description="Whole download including redirects and retries."
    )
    max_redirects: int = Field(default=3, ge=0, description="Redirects followed (each one re-checked).")
    max_attempts: int = Field(default=3, ge=1, description="Tries for timeouts, connection errors and 5xx.")
    backoff_base_s: float = Field(
        default=0.2, ge=0, description="First retry delay; doubles each try, with jitter."
    )
    concurrency: int = Field(
        default=32,
        ge=1,
        description=(
            "Most downloads at once per fetching process (bytes in flight are capped at this "
            "x max_bytes x max(1, decode.processes))."
        ),
    )
    user_agent: str = Field(default="alocc-worker/0.1", description="User-Agent of image downloads.")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class DecodeSettings(BaseModel):
    """Decoding and preprocessing images."""

    model_config = _FROZEN

    processes: int = Field(
        default_factory=lambda: min(8, usable_cpus()),
        ge=0,
        description=(
            "Fetch-and-decode child processes (each with its own fetcher and decode threads), so "
            "downloads and decoding do not share the worker's interpreter lock. 0 = fetch and decode "
            "in the worker process. Default: usable CPUs, at most 8."
        ),
    )
    workers: int = Field(
        default_factory=usable_cpus,
        description=(
            "Decode threads in the worker process (processes = 0), or in each decode process "
            "(Pillow releases the GIL while decoding). Default: usable CPUs."
        ),
    )
    max_pixels: int = Field(default=40_000_000, ge=1, description="Pillow pixel limit (decompression bombs).")
    allowed_formats: tuple[str, ...] = Field(
        default=("JPEG", "PNG", "WEBP", "GIF"), description="Decoders allowed."
    )


class ModelSettings(BaseModel):
    """Which model scores, how, and where."""

    model_config = _FROZEN

    path: Path | None = Field(
        default=None, description="Checkpoint directory; unset = the shipped default model."
    )
    mode: Literal["d_x", "d_rx", "cascade"] | None = Field(
        default=None, description="Unset = the model card's mode."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = CUDA when present.")
    torch_threads: int = Field(default=0, ge=0, description="torch intra-op threads; 0 = torch's default.")
    shadow: bool = Field(
        default=False,
        description="Shadow scoring: never claim the active-version pointer, whatever "
        "ALOCC_REDIS__ACTIVE_VERSION_POLICY says (a new model scored beside the serving one).",
    )


class VerifierSettings(BaseModel):
    """The text verifier of a cascade the model card names (`model.cascade.TextCascade`)."""

    model_config = _FROZEN

    enabled: bool = Field(
        default=True,
        description="Serve the card's text cascade. false = the model alone, under the model's own version "
        "(a version names the whole cascade, so the two never share records).",
    )
    workers: int = Field(
        default=2, ge=1, le=64, description="Images read at once; each OCR read takes about one core."
    )
    allow_engine_mismatch: bool = Field(
        default=False,
        description="Serve the card's cascade with an OCR engine release other than the one it was "
        "calibrated on (logged). false = refuse to start: another release reads differently, and the "
        "card's version would name decisions it did not make.",
    )


class ObservabilitySettings(BaseModel):
    """Metrics, health and logs."""

    model_config = _FROZEN

    host: str = Field(default="0.0.0.0", description="Bind address of the metrics/health HTTP server.")
    port: int = Field(default=9108, ge=0, le=65535, description="/metrics, /healthz, /readyz; 0 = disabled.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    log_format: Literal["json", "console"] = Field(default="json", description="json lines or console.")
    healthy_tick_s: float = Field(
        default=30.0, gt=0, description="/healthz fails when the loop has not ticked for this long."
    )


class GuardSettings(BaseModel):
    """Stopping instead of dead-lettering everything when a deploy is broken."""

    model_config = _FROZEN

    window: int = Field(default=200, ge=1, description="Number of recent events considered.")
    min_events: int = Field(default=50, ge=1, description="No verdict before this many events in the window.")
    max_failure_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1.0,
        description="Stop when more than this share of the window failed (1.0 = never).",
    )


class Settings(BaseSettings):
    """Root of every worker setting; reads `ALOCC_*` environment variables (nested with `__`)."""

    model_config = SettingsConfigDict(
        env_prefix="ALOCC_", env_nested_delimiter="__", frozen=True, extra="ignore", case_sensitive=False
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    topics: TopicsSettings = TopicsSettings()
    batch: BatchSettings = BatchSettings()
    fetch: FetchSettings = FetchSettings()
    decode: DecodeSettings = DecodeSettings()
    model: ModelSettings = ModelSettings()
    verifier: VerifierSettings = VerifierSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    guard: GuardSettings = GuardSettings()
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="Names this worker in logs and dead-letter headers.",
    )
    drain_timeout_s: float = Field(
        default=20.0, gt=0, description="On SIGTERM: most time to finish in-flight work before closing."
    )


_COMPUTED_DEFAULTS = {
    "ALOCC_KAFKA__EXTRA": "{}",
    "ALOCC_KAFKA__TRANSACTIONAL_ID": "alocc-worker-<hostname>",
    "ALOCC_DECODE__PROCESSES": "<usable CPUs, at most 8>",
    "ALOCC_DECODE__WORKERS": "<usable CPUs>",
    "ALOCC_WORKER_ID": "<hostname>-<pid>",
}


def describe_settings() -> list[tuple[str, str, str]]:
    """Every setting as (environment variable, default, description), for `--help` and the README."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            env = f"{prefix}{name.upper()}"
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{env}__")
                continue
            if field.default_factory is not None:
                default = _COMPUTED_DEFAULTS.get(env, "(computed)")
            elif isinstance(field.default, SecretStr):
                default = "(secret)"
            else:
                value = field.default
                default = "unset" if value is None else str(value)
            rows.append((env, default, field.description or ""))

    walk(Settings, "ALOCC_")
    return rows


def settings_markdown() -> str:
    """Every setting as a Markdown table (`python -m worker.settings`), for the README."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for env, default, description in describe_settings():
        lines.append(f"| `{env}` | `{default}` | {description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_markdown())
