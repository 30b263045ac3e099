"""deploy/local/services: a failed start leaves nothing behind, and a start never runs over a live broker.

Each test runs the real script on its own ports and state folder, so it never touches the services that the
other integration tests share.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVICES_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "services"
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pids_with(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `text`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


class Services:
    """The script bound to a private state folder and private ports."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = {
            **os.environ,
            "LOCAL_SERVICES_DIR": str(state),
            "LOCAL_KAFKA_PORT": str(_free_port()),
            "LOCAL_KAFKA_CONTROLLER_PORT": str(_free_port()),
            "LOCAL_REDIS_PORT": str(_free_port()),
        }

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SERVICES_SCRIPT), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    instance = Services(tmp_path / "services")
    yield instance
    instance.run("down")
    assert _pids_with(str(instance.state)) == [], "a service of this test outlived `services down`"


def test_a_kafka_start_that_times_out_stops_the_broker_it_started(services: Services) -> None:
    result = services.run("up", "kafka", LOCAL_KAFKA_START_TIMEOUT="0")

    assert result.returncode == 1
    assert "kafka not ready after 0s" in result.stderr
    assert _pids_with(str(services.state / "kafka")) == []
    assert not (services.state / "kafka" / "kafka.pid").exists()


@pytest.mark.parametrize(
    ("service", "override", "reason"),
    [
        # The data dir formats (that JVM takes no options from here); the broker's JVM refuses its options.
        ("kafka", {"LOCAL_KAFKA_JVM_OPTS": "-XX:+NoSuchOption"}, "kafka exited during start-up"),
        # redis-server reads its generated config and refuses the port.
        ("redis", {"LOCAL_REDIS_PORT": "70000"}, "redis-server exited during start-up"),
    ],
)
def test_a_service_that_exits_during_start_up_is_reported_and_leaves_nothing(
    services: Services, service: str, override: dict[str, str], reason: str
) -> None:
    result = services.run("up", service, **override)

    assert result.returncode == 1
    assert reason in result.stderr
    assert _pids_with(str(services.state / service)) == []
    assert f"{service}: start failed: {reason}" in (services.state / "history.log").read_text()


def test_up_stops_a_broker_its_pid_file_lost_before_it_deletes_the_data_dir(services: Services) -> None:
    assert services.run("up", "kafka").returncode == 0
    pidfile = services.state / "kafka" / "kafka.pid"
    lost = int(pidfile.read_text())
    pidfile.unlink()

    result = services.run("up", "kafka")

    assert result.returncode == 0, result.stderr
    assert f"stopping a kafka broker that no pid file tracks (pid {lost})" in result.stderr
    running = _pids_with(str(services.state / "kafka" / "server.properties"))
    assert running == [int(pidfile.read_text())]
    assert lost not in running


def test_down_stops_a_broker_that_no_pid_file_tracks(services: Services) -> None:
    assert services.run("up", "kafka").returncode == 0
    (services.state / "kafka" / "kafka.pid").unlink()

    assert services.run("down", "kafka").returncode == 0

    assert _pids_with(str(services.state / "kafka")) == []


def test_redis_up_and_down_by_its_config_file(services: Services) -> None:
    assert services.run("up", "redis").returncode == 0
    conf = str(services.state / "redis" / "redis.conf")
    pid = int((services.state / "redis" / "redis.pid").read_text())
    assert _pids_with(conf) == [pid]
    assert services.run("status", "redis").returncode == 0

    assert services.run("down", "redis").returncode == 0

    deadline = time.monotonic() + 5
    while _pids_with(conf) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pids_with(conf) == []


def test_a_test_session_reports_a_failed_broker_start_once(services: Services) -> None:
    """Every test that needs the broker fails with the reason of one start; it never starts again."""
    kafka_tests = [
        "tests/integration/test_foundation.py::test_cooperative_sticky_group_splits_partitions_and_reads_each_message_once",
        "tests/integration/test_foundation.py::test_committed_offsets_survive_a_consumer_restart",
        "tests/integration/test_foundation.py::test_transaction_commits_output_with_offsets_and_hides_aborted_output",
    ]
    configured = {"ALOCC_KAFKA__BOOTSTRAP_SERVERS", "ALOCC_REDIS__URL"}
    env = {name: value for name, value in services.env.items() if name not in configured}
    env["LOCAL_KAFKA_JVM_OPTS"] = "-XX:+NoSuchOption"

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *kafka_tests],
        cwd=SERVICES_SCRIPT.parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "3 errors" in output, output
    assert output.count("kafka exited during start-up") >= 3, output
    starts = (services.state / "history.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in starts] == [
        f"kafka: starting on 127.0.0.1:{services.env['LOCAL_KAFKA_PORT']}",
        f"kafka: start failed: kafka exited during start-up (logs: {services.state}/kafka/logs)",
    ]
    assert _pids_with(str(services.state / "kafka")) == []
