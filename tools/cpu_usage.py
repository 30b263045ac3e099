"""Where the CPU went during a measurement: the whole machine, this process, its threads (and the
memory of its decode processes).

`alocc bench` wraps the end-to-end worker run in a `CpuUsage` so its report can say whether the
worker was limited by its own design (idle cores) or by the machine (every core busy, part of it
with the broker, Redis and the image server that share it on a development box). Linux only: on
other systems the figures are empty rather than wrong.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# "alocc-decode_3" and "alocc-decode_0" are one stage; so are "alocc-score_0" and friends.
_POOL_SUFFIX = re.compile(r"_\d+$")


def _machine_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _stat_seconds(stat_file: Path) -> float | None:
    """CPU seconds (user + system) from a /proc `stat` file (a process's or a thread's), or None."""
    try:
        stat = stat_file.read_text(encoding="ascii")
    except OSError:
        return None  # the process or thread has ended
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may contain spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _process_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of another process, or None when it cannot be read."""
    return _stat_seconds(Path(f"/proc/{pid}/stat"))


def _thread_seconds() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by native thread id."""
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return {}
    seconds = {int(task.name): _stat_seconds(task / "stat") for task in tasks}
    return {tid: value for tid, value in seconds.items() if value is not None}


# The worker's child processes, told apart by the module they run.
_CHILD_ROLES = (
    ("decode", b"worker.stages.decode_processes"),
    ("ocr", b"model.verifier.ocr_processes"),
)


@dataclass(frozen=True)
class _Child:
    pid: int
    role: str  # "decode", "ocr" or "other"
    rss_mb: float
    seconds: float  # CPU seconds (user + system) so far


def _children() -> list[_Child]:
    """The live child processes of this process: role, resident MiB and CPU seconds of each."""
    me = str(os.getpid())
    found: list[_Child] = []
    try:
        entries = [entry for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return found
    for entry in entries:
        try:
            status = (entry / "status").read_text(encoding="ascii", errors="replace")
            if f"\nPPid:\t{me}\n" not in status:
                continue
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # the process ended meanwhile
        seconds = _stat_seconds(entry / "stat")
        if seconds is None:
            continue
        role = next((name for name, module in _CHILD_ROLES if module in command), "other")
        rss = next(
            (int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0
        )
        found.append(_Child(int(entry.name), role, rss, seconds))
    return found


def _thread_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for thread in threading.enumerate():
        if thread.native_id is not None:
            names[thread.native_id] = _POOL_SUFFIX.sub("", thread.name)
    return names


class CpuUsage:
    """A context manager measuring CPU use between enter and exit.

    After exit: `machine_busy_cores` (all processes), `process_cores` (this process) and
    `thread_cores` (this process's threads grouped by Python thread name; threads Python did not
    start, such as torch's intra-op pool or librdkafka's, are summed under "native"). A sampler
    thread records thread names and CPU times every `interval_s`, so threads that end before exit
    (a worker's pools, closed at its end) are still counted. It also samples the resident memory of
    the worker's fetch-and-decode child processes: `decode_children_peak_rss_mb` is the largest sum
    seen, `decode_child_peak_rss_mb` the largest single child. The CPU of the children reaped meanwhile
    (`reaped_children_seconds`, exact), from enter on (what a child already running at enter had used,
    its start, is `reaped_children_start_seconds`), is split by what they run
    (`reaped_children_seconds_by_role`: "decode" for the fetch-and-decode processes, "ocr" for the
    verifier's, "other"), in the proportions the samples saw.
    """

    def __init__(self, interval_s: float = 0.25, others: dict[str, int] | None = None) -> None:
        """Create the meter; nothing is measured until `__enter__`.

        Args:
            interval_s: How often the sampler thread looks.
            others: Other processes to account by name -> pid (e.g. the benchmark's image server);
                reported in `other_cores`.
        """
        self.other_cores: dict[str, float] = {}
        self.reaped_children_cores = 0.0
        self._children = 0.0
        self._others = dict(others or {})
        self._other_start: dict[str, float | None] = {}
        self._other_last: dict[str, float] = {}
        self.machine_busy_cores = 0.0
        self.process_cores = 0.0
        self.process_seconds = 0.0  # CPU seconds of this process between enter and exit
        self.reaped_children_seconds = 0.0  # and of its children that ended meanwhile (OCR, decode processes)
        self.reaped_children_start_seconds = 0.0  # their CPU before enter (their start), left out above
        self.thread_cores: dict[str, float] = {}
        self.decode_children_peak_rss_mb = 0.0
        self.decode_child_peak_rss_mb = 0.0
        self._interval_s = interval_s
        self._wall = 0.0
        self._wall_seconds = 1.0
        self._machine: tuple[int, int] | None = None
        self._process = 0.0
        self._start_threads: dict[int, float] = {}
        # Each child's CPU seconds when first seen (children alive at enter: their use until then) and when
        # last seen; the children ended meanwhile are split by role in the proportions sampled.
        self._child_start: dict[int, float] = {}
        self._child_last: dict[int, float] = {}
        self._child_roles: dict[int, str] = {}
        self.reaped_children_seconds_by_role: dict[str, float] = {}
        self._last_threads: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_loop, name="alocc-cpu-sampler", daemon=True)

    def _sample(self) -> None:
        self._names.update(_thread_names())
        self._last_threads.update(_thread_seconds())
        for name, pid in self._others.items():
            seconds = _process_seconds(pid)
            if seconds is not None:  # keep the last reading of a process that has ended
                self._other_last[name] = seconds
        children = _children()
        decode_rss = [child.rss_mb for child in children if child.role == "decode"]
        if decode_rss:
            self.decode_children_peak_rss_mb = max(self.decode_children_peak_rss_mb, sum(decode_rss))
            self.decode_child_peak_rss_mb = max(self.decode_child_peak_rss_mb, *decode_rss)
        for child in children:
            # A child read just before its exec, or as a zombie, shows no command line ("other"): keep the
            # role it was seen with.
            if child.role != "other" or child.pid not in self._child_roles:
                self._child_roles[child.pid] = child.role
            self._child_last[child.pid] = child.seconds

    def _sample_loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def __enter__(self) -> CpuUsage:
        self._wall = time.monotonic()
        self._machine = _machine_jiffies()
        times = os.times()
        self._process = times.user + times.system
        self._children = times.children_user + times.children_system
        self._start_threads = _thread_seconds()
        self._other_start = {name: _process_seconds(pid) for name, pid in self._others.items()}
        self._child_start = {child.pid: child.seconds for child in _children()}
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        self._sample()
        wall = max(time.monotonic() - self._wall, 1e-9)
        self._wall_seconds = wall
        times = os.times()
        self.process_seconds = times.user + times.system - self._process
        self.process_cores = self.process_seconds / wall
        # Children are counted when reaped: the worker's decode and OCR processes end with the worker. The
        # kernel's figure is each reaped child's whole life; a child already running at enter (started and
        # loaded with the worker, before the measured run) is counted from its CPU seen at enter, so a
        # one-time start (an OCR engine's model loading) is not spread over the run's events.
        alive = {child.pid for child in _children()}  # not reaped: neither in the total nor subtracted
        before = sum(seconds for pid, seconds in self._child_start.items() if pid not in alive)
        reaped = times.children_user + times.children_system - self._children
        self.reaped_children_seconds = max(0.0, reaped - before)
        self.reaped_children_start_seconds = reaped - self.reaped_children_seconds
        self.reaped_children_cores = self.reaped_children_seconds / wall
        self.reaped_children_seconds_by_role = self._split_by_role(self.reaped_children_seconds, alive)
        for name in self._others:
            start, end = self._other_start.get(name), self._other_last.get(name)
            if start is not None and end is not None:
                self.other_cores[name] = round((end - start) / wall, 2)
        end_machine = _machine_jiffies()
        if self._machine is not None and end_machine is not None:
            busy = end_machine[0] - self._machine[0]
            total = max(end_machine[1] - self._machine[1], 1)
            self.machine_busy_cores = busy / total * (os.cpu_count() or 1)
        grouped: dict[str, float] = {}
        for tid, seconds in self._last_threads.items():
            name = self._names.get(tid, "native")
            if name == self._sampler.name:
                continue
            used = (seconds - self._start_threads.get(tid, 0.0)) / wall
            grouped[name] = grouped.get(name, 0.0) + used
        self.thread_cores = {
            name: round(cores, 2) for name, cores in sorted(grouped.items()) if cores >= 0.005
        }

    def _split_by_role(self, total: float, alive: set[int]) -> dict[str, float]:
        """`total` (the exact CPU of the children reaped) split by role in the proportions the samples saw
        of the children reaped (not those `alive`; a child's last fraction of a sampling interval is not
        seen)."""
        sampled: dict[str, float] = {}
        for pid, last in self._child_last.items():
            if pid in alive:
                continue
            role = self._child_roles[pid]
            sampled[role] = sampled.get(role, 0.0) + max(0.0, last - self._child_start.get(pid, 0.0))
        seen = sum(sampled.values())
        if seen <= 0:
            return {}
        return {role: total * seconds / seen for role, seconds in sorted(sampled.items()) if seconds > 0}

    def report(self) -> dict[str, object]:
        """The figures as plain JSON (cores = CPU seconds per wall second)."""
        return {
            "machine_busy_cores": round(self.machine_busy_cores, 2),
            "machine_cores": os.cpu_count(),
            "worker_process_cores": round(self.process_cores, 2),
            "worker_thread_cores": self.thread_cores,
            "children_cores": round(self.reaped_children_cores, 2),
            "children_start_seconds": round(self.reaped_children_start_seconds, 2),
            "children_cores_by_role": {
                role: round(seconds / self._wall_seconds, 2)
                for role, seconds in self.reaped_children_seconds_by_role.items()
            },
            "other_process_cores": self.other_cores,
            "decode_children_peak_rss_mb": round(self.decode_children_peak_rss_mb, 1),
            "decode_child_peak_rss_mb": round(self.decode_child_peak_rss_mb, 1),
        }
