"""The progress lines of a run, one key source at a time: a long run must say how far it got.

Every line comes from the `key_batches` stream's logger (`tap-marketo-opps.key_batches`), so
one logging setting quiets or keeps them all.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

from marketo_api import MAX_BATCH, ClientStats

from .keys import KeySource
from .pipeline import BatchResult, Plan


def counts(counter: Mapping[str, int]) -> str:
    """`opportunities 12, opportunity_roles 40` (by name), or `none`."""
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counter.items())) or "none"


def log_skipped(logger: logging.Logger, source: KeySource) -> None:
    logger.info("Key source %s: finished by the stopped run, skipped", source.name)


class SourceProgress:
    """One key source: a line at its start, every `every` batches and at its end.

    The lines read the run's counters (`emitted`) and the client's calls as they are then,
    so they show the whole run's records and this source's calls and speed.
    """

    def __init__(
        self,
        logger: logging.Logger,
        stats: ClientStats,
        emitted: Mapping[str, int],
        *,
        source: KeySource,
        plan: Plan,
        key_count: int,
        skipped: int,
        every: int,
    ) -> None:
        self._logger = logger
        self._stats = stats
        self._emitted = emitted
        self._source = source.name
        self.total_batches = math.ceil(key_count / MAX_BATCH)
        logger.info(
            "Key source %s: %s (%s keys, %s batches of %s; %s)%s",
            source.name,
            source.description,
            f"{key_count:,}",
            f"{self.total_batches:,}",
            MAX_BATCH,
            describe_plan(plan),
            f"; resuming after batch {skipped:,}" if skipped else "",
        )
        self._last_batch = skipped
        self._every = max(every, 1)
        self._started = time.monotonic()
        self._calls_at_start = stats.calls
        self._keys = 0
        self._done = 0

    def batch_done(self, result: BatchResult) -> None:
        self._last_batch = result.number
        self._keys += result.key_count
        self._done += 1
        if self._done % self._every == 0:
            self._log()

    def finished(self) -> None:
        self._log(final=True)

    def _log(self, *, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        calls = self._stats.calls - self._calls_at_start
        remaining = max(self.total_batches - self._last_batch, 0)
        eta = elapsed / self._done * remaining if self._done else 0.0
        self._logger.info(
            "Key source %s: %s batch %s of %s (%.1f%%), %s keys this run; records emitted so far: %s; "
            "%s calls (%.1f calls/min)%s",
            self._source,
            "finished at" if final else "at",
            f"{self._last_batch:,}",
            f"{self.total_batches:,}",
            100.0 * self._last_batch / self.total_batches if self.total_batches else 100.0,
            f"{self._keys:,}",
            counts(self._emitted),
            f"{calls:,}",
            calls / elapsed * 60.0,
            "" if final else f"; about {_duration(eta)} left",
        )


def describe_plan(plan: Plan) -> str:
    """`opportunity roles by leadId, then their opportunities by externalOpportunityId`."""
    text = f"{plan.primary.plural} by {plan.primary_field}"
    if not plan.emit_primary:
        text += " (only to find the linked records)"
    if plan.follow_up is not None:
        text += f", then their {plan.follow_up.plural} by externalOpportunityId"
    return text


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
