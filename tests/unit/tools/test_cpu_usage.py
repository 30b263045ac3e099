"""The benchmark's CPU meter attributes work to the thread that did it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tools.cpu_usage import CpuUsage

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_busy_thread_and_other_process_are_counted() -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", "import time\nend=time.time()+0.8\nwhile time.time()<end: pass"]
    )
    try:
        with CpuUsage(interval_s=0.05, others={"spinner": other.pid}) as usage:
            worker = threading.Thread(target=_spin, args=(0.5,), name="busy-thread")
            worker.start()
            worker.join()  # ended before exit: the sampler still saw it
            other.wait()
    finally:
        other.kill()
    report = usage.report()
    # Each spinner gets a core to itself on an idle machine, far less on a busy one: the bounds only
    # check that the work was seen and attributed, not how fast the machine was.
    assert usage.thread_cores.get("busy-thread", 0.0) > 0.05
    assert usage.process_cores > 0.05
    assert usage.other_cores["spinner"] > 0.05
    assert 0.0 < usage.machine_busy_cores <= (report["machine_cores"] or 1) + 0.01


def test_children_cpu_is_split_by_the_module_they_run() -> None:
    def spinner(module: str) -> subprocess.Popen[bytes]:
        # The role is read from the command line; a comment naming the module stands in for `-m module`.
        # 0.3 s of CPU however busy the machine, then idle long enough for the sampler to see it all.
        code = f"import time  # {module}\nwhile time.process_time() < 0.3: pass\ntime.sleep(0.4)"
        return subprocess.Popen([sys.executable, "-c", code])

    with CpuUsage(interval_s=0.05) as usage:
        children = [spinner("model.verifier.ocr_processes"), spinner("worker.stages.decode_processes")]
        for child in children:
            child.wait()  # reaped inside the measurement, as the worker's children are
    by_role = usage.reaped_children_seconds_by_role
    assert by_role.get("ocr", 0.0) > 0.1 and by_role.get("decode", 0.0) > 0.1, by_role
    assert sum(by_role.values()) == pytest.approx(usage.reaped_children_seconds)
    assert {"ocr", "decode"} <= set(usage.report()["children_cores_by_role"])  # type: ignore[arg-type]


def test_a_child_running_before_the_measurement_is_counted_from_enter_on() -> None:
    # A worker's OCR processes start and load their engines before the measured run and end with it:
    # their start must not be spread over the run's events.
    code = (
        "import sys, time  # model.verifier.ocr_processes\n"
        "while time.process_time() < 0.4: pass\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "while time.process_time() < 0.6: pass\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        with CpuUsage(interval_s=0.05) as usage:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            child.stdin.flush()
            child.wait()
    finally:
        child.kill()
    # About 0.2 s in the window (plus the interpreter's exit); the 0.4 s start is reported apart.
    assert 0.1 < usage.reaped_children_seconds < 0.35, usage.reaped_children_seconds
    assert usage.reaped_children_start_seconds >= 0.35
    by_role = usage.reaped_children_seconds_by_role
    assert by_role.get("ocr", 0.0) == pytest.approx(usage.reaped_children_seconds)
