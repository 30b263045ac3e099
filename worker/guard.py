"""Stop the worker when most recent events fail, instead of draining the topic into the dead-letter queue.

Bad input is normal and rare; when most events in a window fail, the likely cause is the worker's own
environment (no network, a broken decoder, a wrong setting). Dead-lettering would then throw away good
events, so the worker stops with `FailureRateExceeded` before committing the failing window.
"""

from __future__ import annotations

from collections import Counter, deque

from worker.failures import FailureRateExceeded


class FailureRateGuard:
    """A sliding window of outcomes (True = failed) with a maximum failure ratio."""

    def __init__(self, window: int, min_events: int, max_failure_ratio: float) -> None:
        """Create the guard.

        Args:
            window: How many recent events are kept.
            min_events: No verdict before the window holds this many events.
            max_failure_ratio: Stop when the failed share exceeds this (1.0 disables the guard).
        """
        self._outcomes: deque[tuple[bool, str]] = deque(maxlen=window)
        self._min_events = min(min_events, window)
        self._max_ratio = max_failure_ratio

    def record(self, failed: bool, reason: str = "") -> None:
        """Record one event's outcome and raise if the window now fails too often.

        Raises:
            FailureRateExceeded: with the counts and the most common reasons.
        """
        self.check([(failed, reason)])
        self._outcomes.append((failed, reason))

    def check(self, outcomes: list[tuple[bool, str]]) -> None:
        """Raise if the window *would* fail too often with `outcomes` added; records nothing.

        The worker checks a commit step's outcomes before committing it and `extend`s the window only
        once the commit went through: a step that is aborted and redone is counted once, not twice.

        Raises:
            FailureRateExceeded: with the counts and the most common reasons.
        """
        if self._max_ratio >= 1.0 or not outcomes:
            return
        window = deque(self._outcomes, maxlen=self._outcomes.maxlen)
        window.extend(outcomes)
        if len(window) < self._min_events:
            return
        failures = [why for bad, why in window if bad]
        ratio = len(failures) / len(window)
        if ratio > self._max_ratio:
            common = ", ".join(f"{why} x{n}" for why, n in Counter(failures).most_common(3))
            raise FailureRateExceeded(
                f"{len(failures)} of the last {len(window)} events failed ({common}); "
                "stopping instead of dead-lettering them: check the worker's network, decoder and settings"
            )

    def extend(self, outcomes: list[tuple[bool, str]]) -> None:
        """Add committed outcomes to the window (after `check` passed for them)."""
        self._outcomes.extend(outcomes)
