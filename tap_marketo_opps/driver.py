"""The tap's driver: the key sources one after another, each a run of fetched key batches.

Marketo cannot list opportunities, so both record streams are read through key batches (see
`streams`). The driver yields one `KeyBatch` per fetched batch, in batch order, as the records
of the internal `key_batches` stream; the SDK hands each to every selected child as its
context before it asks for the next one. So when a `yield` returns, the batch's records are
emitted, and only then may the checkpoint (`checkpoint`) pass it and the progress lines
(`progress`) count it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from marketo_api import (
    CallBudgetExhaustedError,
    MarketoClient,
    MarketoObject,
    MarketoQuotaExceededError,
    chunked,
)

from .checkpoint import Checkpoint, fingerprint
from .keys import KeySource, key_sources
from .pipeline import FOLLOW_UP_POOL_BATCHES, BatchPipeline, BatchResult, Plan, QueryCount, make_plan
from .progress import SourceProgress, log_skipped
from .seen import RunSeen

if TYPE_CHECKING:
    import datetime as dt

    from singer_sdk import Stream

    from .tap import TapMarketoOpps

NO_KEY_SOURCE = (
    "No key source is configured, so no opportunity or role can be read: Marketo has no "
    "call that lists them. Set external_opportunity_ids(_file), lead_ids(_file), "
    "lead_id_range or filters."
)


class SyncStoppedError(Exception):
    """The run stopped before the end (607 quota or daily_call_budget); STATE allows a resume."""


@dataclass
class SyncRun:
    """The counters of one tap run, kept by the streams and read by the summary and progress lines."""

    signpost: str | None = None  # start of the (first) run, caps the promoted bookmarks
    emitted: dict[str, int] = field(default_factory=dict)
    filtered: dict[str, int] = field(default_factory=dict)  # older than the bookmark/start_date
    # values not readable as their property's type, emitted as null: (stream, field) -> count
    unreadable: dict[tuple[str, str], int] = field(default_factory=dict)
    queries: QueryCount = field(default_factory=QueryCount)
    keys: int = 0  # keys whose batches were queried this run
    # exactly the records emitted at the bookmark's second by the run that saved it: not again
    unchanged: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)  # records Marketo returned, per stream
    newest: dict[str, dt.datetime] = field(default_factory=dict)  # the newest updatedAt read

    def count(self, counter: dict[str, int], stream: str) -> None:
        counter[stream] = counter.get(stream, 0) + 1

    def batch_done(self, result: BatchResult) -> None:
        self.queries.add(result.queries)
        self.keys += result.key_count


class KeyBatch(dict):
    """A record of `key_batches`, or a child's context, with the fetched batch in `result`.

    The dict is what the SDK sees: {"source", "batch", "keys"} as the record, {"source",
    "batch"} as the context. The records ride as an attribute, not an item, because the SDK
    prints the context's items in its "Beginning sync" and METRIC lines; `copy.copy`, which
    the SDK applies to a context, keeps the attribute.
    """

    def __init__(self, result: BatchResult, **items: Any) -> None:
        super().__init__(**items)
        self.result = result

    def child_context(self) -> KeyBatch:
        return KeyBatch(self.result, source=self["source"], batch=self["batch"])


class Child(Protocol):
    """What the driver needs of a selected record stream."""

    @property
    def marketo_object(self) -> MarketoObject: ...

    def requested_fields(self) -> tuple[str, ...]: ...

    def log_bookmark_outcome(self) -> None: ...


@dataclass(frozen=True)
class SourceRun:
    """One key source with its plan, its keys counted and fingerprinted before the run starts."""

    source: KeySource
    plan: Plan
    key_count: int
    digest: str

    def results(
        self, client: MarketoClient, seen: RunSeen, *, after: int, pool_batches: int
    ) -> Iterator[BatchResult]:
        """The batches after batch `after` (those a stopped run had not finished), fetched in order."""
        workers = client.settings.max_concurrent_requests
        pipeline = BatchPipeline(
            client, self.plan, seen, workers=workers, window=2 * workers, pool_batches=pool_batches
        )
        keys = enumerate(chunked(self.source.values()), start=1)
        return pipeline.run((number, batch) for number, batch in keys if number > after)


class Driver:
    """One tap run over the key sources, for the selected record streams `children`."""

    def __init__(self, stream: Stream, tap: TapMarketoOpps, children: Sequence[Child]) -> None:
        self._stream = stream
        self._tap = tap
        self._log = stream.logger
        self._children = children
        # A connection test (--test) stops after its first batch and leaves no checkpoint.
        self._dry_run = stream.ABORT_AT_RECORD_COUNT is not None

    def batches(self) -> Iterator[KeyBatch]:
        requested = {child.marketo_object: child.requested_fields() for child in self._children}
        if not requested:
            return
        sources = key_sources(self._stream.config, check_files=True)
        if not sources:
            self._log.warning(NO_KEY_SOURCE)
            return
        runs = [_source_run(source, requested) for source in sources]
        checkpoint = self._checkpoint(runs, requested)
        self._tap.sync_run.signpost = checkpoint.started_at
        # Per run: a resumed run starts with empty sets (see README, "Stopping and resuming").
        with RunSeen() as seen:
            for index, run in enumerate(runs):
                yield from self._source(index, run, checkpoint, seen)
        for child in self._children:
            child.log_bookmark_outcome()
        checkpoint.finish()

    def _source(
        self, index: int, run: SourceRun, checkpoint: Checkpoint, seen: RunSeen
    ) -> Iterator[KeyBatch]:
        skip = checkpoint.begin(index)
        if skip is None:
            log_skipped(self._log, run.source)
            return
        tap = self._tap
        progress = SourceProgress(
            self._log,
            tap.marketo.stats,
            tap.sync_run.emitted,
            source=run.source,
            plan=run.plan,
            key_count=run.key_count,
            skipped=skip,
            every=int(self._stream.config.get("progress_log_batches") or 10),
        )
        # A connection test stops after its first batch: that batch must bring its own linked records.
        pool_batches = 1 if self._dry_run else FOLLOW_UP_POOL_BATCHES
        try:
            for result in run.results(tap.marketo, seen, after=skip, pool_batches=pool_batches):
                yield KeyBatch(result, source=run.source.name, batch=result.number, keys=result.key_count)
                # Every selected child has now emitted this batch's records.
                tap.flush_output()
                tap.sync_run.batch_done(result)
                checkpoint.batch_done(index, result.complete_through)
                progress.batch_done(result)
        except (MarketoQuotaExceededError, CallBudgetExhaustedError) as exc:
            raise self._stopped(exc, run.source.name, checkpoint.done, progress.total_batches) from exc
        progress.finished()
        checkpoint.source_done(index)

    def _checkpoint(
        self, runs: Sequence[SourceRun], requested: dict[MarketoObject, tuple[str, ...]]
    ) -> Checkpoint:
        tap = self._tap
        return Checkpoint(
            self._stream.stream_state,
            lambda: tap.state_writer.write_state(tap.state),
            self._log,
            sources=[run.source.name for run in runs],
            fingerprint=fingerprint(
                [(run.source.name, run.key_count, run.digest) for run in runs],
                requested,
                start_date=self._stream.config.get("start_date"),
                bookmarks=self._stream.tap_state.get("bookmarks", {}),
            ),
            run_started=tap.initialized_at / 1000,
            enabled=not self._dry_run,
        )

    def _stopped(self, exc: Exception, source: str, done: int, total: int) -> SyncStoppedError:
        if isinstance(exc, MarketoQuotaExceededError):
            reason = "Marketo's daily API quota is used up (error 607; it resets at 12:00 AM US Central time)"
        else:
            reason = (
                f"the daily_call_budget of {self._stream.config.get('daily_call_budget')} calls is used up"
            )
        return self._tap.stopped(
            self._log,
            f"Stopped early: {reason}. Key source {source}: {done:,} of {total:,} batches are done and "
            f"in the last STATE message; run the tap again with that state to resume after batch {done:,}.",
        )


def _source_run(source: KeySource, requested: dict[MarketoObject, tuple[str, ...]]) -> SourceRun:
    plan = make_plan(
        source.obj,
        source.field,
        opportunity_fields=requested.get(MarketoObject.OPPORTUNITY),
        role_fields=requested.get(MarketoObject.OPPORTUNITY_ROLE),
    )
    assert plan is not None  # some stream is selected
    return SourceRun(source, plan, *source.scan())
