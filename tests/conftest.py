"""Test-wide configuration: the integration marker and the real Kafka broker and Redis endpoints.

Services start only for tests that ask for them. `kafka_bootstrap` and `redis_url` are session-scoped:

* If `ALOCC_KAFKA__BOOTSTRAP_SERVERS` / `ALOCC_REDIS__URL` is set, that service is used as it is and never
  started or stopped here (e.g. after `eval "$(deploy/local/services up)"`, or in CI).
* Otherwise the session starts the local service with `deploy/local/services up <name>` and stops it at
  the end, unless it was already running before any test session started it (then it is left alone).
  Several test sessions on one machine share the local services: each holds a lease (a file named by
  its pid) and the last one out stops what a test session started.

Tests under `tests/integration/` and every test that requests a service fixture are marked
`integration`, so `pytest -m "not integration"` runs without Kafka or Redis.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICES_SCRIPT = REPO_ROOT / "deploy" / "local" / "services"
INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
KAFKA_ENV = "ALOCC_KAFKA__BOOTSTRAP_SERVERS"
REDIS_ENV = "ALOCC_REDIS__URL"
# Fixtures that need a running service; a test asking for any of them is an integration test.
SERVICE_FIXTURES = frozenset(
    {
        "kafka_bootstrap",
        "redis_url",
        "admin",
        "redis_client",
        "new_topic",
        "consume_all",
        "make_consumer",
        "make_producer",
    }
)
# Cold start with the jar download takes well under a minute; allow for a loaded machine.
SERVICES_TIMEOUT_S = 300


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark integration tests by directory and by the service fixtures they request."""
    del config
    for item in items:
        in_integration_dir = INTEGRATION_DIR in Path(str(item.path)).resolve().parents
        fixturenames = set(getattr(item, "fixturenames", ()))
        if in_integration_dir or fixturenames & SERVICE_FIXTURES:
            item.add_marker(pytest.mark.integration)


def _state_dir() -> Path:
    """The runtime-state folder of deploy/local/services (same default and override as the script)."""
    return Path(os.environ.get("LOCAL_SERVICES_DIR", REPO_ROOT / "var" / "services"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_services(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVICES_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=SERVICES_TIMEOUT_S,
        check=False,
    )


class LocalServiceLease:
    """One test session's hold on a local service started through `deploy/local/services`.

    The lease folder `<state>/test-leases/<service>/` holds one empty file per session (named by pid) and a
    `started-by-tests` marker when a test session, not a person, started the service. Every change happens
    under an exclusive flock, so concurrent sessions agree on who stops the service.
    """

    def __init__(self, service: str, env_var: str) -> None:
        self.service = service
        self.env_var = env_var
        self.folder = _state_dir() / "test-leases" / service
        self.own_lease = self.folder / str(os.getpid())
        self.marker = self.folder / "started-by-tests"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder.parent / f"{self.service}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def acquire(self) -> str:
        """Start the service if needed, take a lease, and return its endpoint (the exported value)."""
        with self._locked():
            was_running = _run_services("status", self.service).returncode == 0
            result = _run_services("up", self.service)
            if result.returncode != 0:
                raise RuntimeError(
                    f"deploy/local/services up {self.service} failed (exit {result.returncode}):\n"
                    f"{result.stderr}"
                )
            if not was_running:
                self.marker.touch()
            self.own_lease.touch()
        return _parse_exports(result.stdout)[self.env_var]

    def release(self) -> None:
        """Drop the lease; stop the service if a test session started it and no other session holds it."""
        with self._locked():
            self.own_lease.unlink(missing_ok=True)
            others = [p for p in self.folder.iterdir() if p.name.isdigit() and _pid_alive(int(p.name))]
            if others or not self.marker.exists():
                return
            result = _run_services("down", self.service)
            if result.returncode != 0:
                raise RuntimeError(f"deploy/local/services down {self.service} failed:\n{result.stderr}")
            self.marker.unlink(missing_ok=True)


def _parse_exports(stdout: str) -> dict[str, str]:
    """Turn `export NAME=value` lines into a dict (the values the script prints carry no quoting)."""
    exports: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            exports[name] = value
    return exports


def _service_endpoint(service: str, env_var: str) -> Iterator[str]:
    configured = os.environ.get(env_var)
    if configured:
        yield configured
        return
    # A start that fails raises here once: pytest keeps a session fixture's exception and raises it again for
    # every later test that asks for the service, without starting it again.
    lease = LocalServiceLease(service, env_var)
    endpoint = lease.acquire()
    try:
        yield endpoint
    finally:
        lease.release()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """`host:port` of a real Kafka broker (from `ALOCC_KAFKA__BOOTSTRAP_SERVERS`, else the local one).

    The broker allows topic auto-creation, but tests should create their topics with `new_topic`.
    """
    yield from _service_endpoint("kafka", KAFKA_ENV)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """`redis://host:port/db` of a real Redis (from `ALOCC_REDIS__URL`, else the local one).

    The database is shared with other tests and sessions: keep to the per-test `redis_prefix`.
    """
    yield from _service_endpoint("redis", REDIS_ENV)
