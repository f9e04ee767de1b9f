"""Keeps this process's own traffic inside Marketo's rate, concurrency and daily limits."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import CallBudgetExhaustedError


class CallLimiter:
    """At most `max_calls` calls in any sliding window and `max_concurrent` in flight.

    A call occupies the window from the moment it is sent until `window_seconds` after its
    response arrived. Marketo counts a call somewhere in between, so counting it at both ends
    means our own traffic can never be seen as more than `max_calls` in one window, whatever
    the network delays.
    """

    def __init__(
        self,
        *,
        max_calls: int,
        window_seconds: float,
        max_concurrent: int,
        daily_budget: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_calls = max_calls
        self.window_seconds = window_seconds
        self.max_concurrent = max_concurrent
        self.daily_budget = daily_budget
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._finished: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self.calls_started = 0
        self.wait_seconds = 0.0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one call's place in the window and in the concurrency limit."""
        self._acquire()
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._finished.append(self._clock())
                self._cond.notify_all()

    def _acquire(self) -> None:
        started = self._clock()
        with self._cond:
            while True:
                if self.daily_budget is not None and self.calls_started >= self.daily_budget:
                    raise CallBudgetExhaustedError(
                        f"daily_call_budget of {self.daily_budget} calls reached; stopping before "
                        "the next call (state allows a later run to resume)"
                    )
                now = self._clock()
                while self._finished and self._finished[0] + self.window_seconds <= now:
                    self._finished.popleft()
                occupied = len(self._finished) + self._in_flight
                if self._in_flight < self.max_concurrent and occupied < self.max_calls:
                    self._in_flight += 1
                    self.calls_started += 1
                    self.wait_seconds += now - started
                    return
                if self._in_flight >= self.max_concurrent or not self._finished:
                    self._cond.wait()  # a call in flight will finish and notify
                else:
                    self._cond.wait(timeout=self._finished[0] + self.window_seconds - now)


_registry: dict[tuple[object, ...], CallLimiter] = {}
_registry_lock = threading.Lock()


def shared_limiter(
    instance: str,
    *,
    max_calls: int,
    window_seconds: float,
    max_concurrent: int,
    daily_budget: int | None,
) -> CallLimiter:
    """One limiter per Marketo instance (and settings) for the whole process.

    Every client built for the same instance, in any thread, draws from it, so parallel
    streams, sinks and worker threads add up to the configured share and no more.
    """
    key = (instance, max_calls, window_seconds, max_concurrent, daily_budget)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = CallLimiter(
                max_calls=max_calls,
                window_seconds=window_seconds,
                max_concurrent=max_concurrent,
                daily_budget=daily_budget,
            )
            _registry[key] = limiter
        return limiter
