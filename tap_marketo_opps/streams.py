"""Streams of tap-marketo-opps, and how two streams are fed from one key batch at a time.

How interleaving works
----------------------
Marketo cannot list opportunities, so both record streams are read through *key batches*:
300 keys of a key source (lead ids, externalOpportunityIds, filter values) become one query,
and the answer feeds both streams (roles by leadId also name the opportunities to fetch).
The SDK syncs one top-level stream after another, so the two record streams are children of
an internal parent stream, `key_batches`:

    key_batches (internal: no SCHEMA, no RECORD, not in the discovered catalog)
     ├── opportunities       child, context {"source": ..., "batch": n}
     └── opportunity_roles   child, context {"source": ..., "batch": n}
    opportunity_fields       top-level, from the schema/fields endpoint + describe
    opportunity_role_fields  top-level, from the roles describe

`KeyBatchesStream.get_records` is the driver. It runs the key sources one after another,
fetches their batches concurrently (`pipeline.BatchPipeline`), and yields one parent record
per batch, in batch order. For every parent record the SDK syncs each selected child with
that batch's context; the children only read the fetched batch (`SyncRun.current`), coerce
and filter it, and emit through the normal SDK path, so catalog selection, stream maps,
flattening, STATE and `--test` behave as for any parent/child tap. A deselected child is
simply not synced; the driver still fetches what it needs (e.g. roles to find opportunity
ids) but asks only for `externalOpportunityId`.

State
-----
When the generator resumes after a parent record, every selected child has emitted that
batch's records. The driver then records `BatchResult.complete_through` (the last batch none
of whose follow-up ids still wait in the pipeline's pool) as the *checkpoint* in
`bookmarks.key_batches` and writes a STATE message. STATE therefore never runs ahead of
emitted records. A stopped run
(kill, quota 607, daily_call_budget) resumes after the checkpoint without calling Marketo for
the batches before it; a finished run clears the checkpoint, so the next run starts over.
The checkpoint carries a fingerprint of everything that decides what a batch emits (the
keys, selected fields, start_date, the bookmarks); if any of it changed, the run starts over.

The children keep the SDK's own `updatedAt` bookmark (one per stream:
`state_partitioning_keys = []`). It is unsorted, so the SDK holds the running maximum in
progress markers and promotes it only when the whole run ends; an unfinished run leaves the
previous bookmark in place, which is what its resumption must filter with. The signpost (the
cap of the promoted bookmark) is the start time of the *first* run of a resumed sequence,
stored in the checkpoint: records updated after that moment in batches already done would
otherwise be skipped forever.

Round trips that go quiet
-------------------------
The bookmark is inclusive (records updated at or after it are emitted) because Marketo's
`updatedAt` has whole seconds: a record changed again within the bookmark's second, after the
run that set the bookmark read it, would be lost by a strict `>`. An inclusive bookmark alone
re-emits the bookmark second's records every run, so a finished run also stores, for that
second only, each such record's `marketoGUID` with a digest of its emitted values
(`bookmarks.<stream>.at_bookmark`). The next run skips a record only when its `updatedAt` is
that second *and* its digest is the stored one, i.e. it is exactly the record already emitted.
Any change gives another digest and is emitted; a record missing from the set is emitted again
(a duplicate, never a loss). See `BookmarkSecond`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Stream
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context, Record
from singer_sdk.mapper import RemoveRecordTransform, StreamMap
from singer_sdk.singerlib.catalog import REPLICATION_INCREMENTAL

from marketo_api import (
    MAX_BATCH,
    CallBudgetExhaustedError,
    MarketoObject,
    MarketoQuotaExceededError,
    chunked,
)

from .keys import KeySource, key_sources
from .pipeline import FOLLOW_UP_POOL_BATCHES, BatchPipeline, BatchResult, QueryCount, make_plan
from .schemas import (
    KEY_BATCHES_SCHEMA,
    OPPORTUNITY_FIELDS_SCHEMA,
    ROLE_FIELDS_SCHEMA,
    RecordCoercer,
    field_record,
)
from .seen import RunSeen

if TYPE_CHECKING:
    from singer_sdk.helpers._batch import BatchConfig

    from .tap import TapMarketoOpps

# The SDK's keys for the running maximum of an unsorted stream, and what our note there says.
PROGRESS_MARKERS = "progress_markers"
PROGRESS_MARKER_NOTE = "Note"
RESUME_NOTE = (
    "Running maximum of updatedAt, promoted to the bookmark when the run finishes. "
    "A stopped run resumes from the key-batch state in bookmarks.key_batches."
)
OPPORTUNITIES = "opportunities"
OPPORTUNITY_ROLES = "opportunity_roles"
OPPORTUNITY_FIELDS = "opportunity_fields"
OPPORTUNITY_ROLE_FIELDS = "opportunity_role_fields"
KEY_BATCHES = "key_batches"

CHECKPOINT = "checkpoint"
CHECKPOINT_VERSION = 1
AT_BOOKMARK = "at_bookmark"  # stream state: the records emitted at the bookmark's second


class SyncStoppedError(Exception):
    """The run stopped before the end (607 quota or daily_call_budget); STATE allows a resume."""


@dataclass
class SyncRun:
    """What the driver shares with its children during one tap run."""

    signpost: str | None = None  # start of the (first) run, caps the promoted bookmarks
    current: BatchResult | None = None  # the batch the children are emitting
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


class _InternalOnlyMap(RemoveRecordTransform):
    """The driver's stream map: never writes SCHEMA or RECORD, but lets children sync."""

    def get_filter_result(self, record: dict) -> bool:
        return True


class KeyBatchesStream(Stream):
    """Internal parent stream: one record per key batch; drives the two record streams."""

    name = KEY_BATCHES
    primary_keys: ClassVar[list[str]] = ["source", "batch"]
    selected_by_default = False

    def __init__(self, tap: TapMarketoOpps) -> None:
        super().__init__(tap, schema=KEY_BATCHES_SCHEMA, name=KEY_BATCHES)
        self._owner = tap
        self._maps: list[StreamMap] | None = None

    @property
    def stream_maps(self) -> list[StreamMap]:
        """Never emitted, whatever the catalog or the configured stream maps say."""
        if self._maps is None:
            self._maps = [_InternalOnlyMap(self.name, self.schema, self.primary_keys, None)]
        return self._maps

    def get_batch_config(self, config: Mapping[str, Any]) -> BatchConfig | None:
        """The driver's own records are never written, not even as BATCH files."""
        return None

    def get_child_context(self, record: Record, context: Context | None) -> Context | None:
        return {"source": record["source"], "batch": record["batch"]}

    def log_sync_costs(self) -> None:
        """Called by the SDK once every stream has synced: log the run's Marketo calls."""
        self._owner.log_call_summary()

    # ---- the driver ------------------------------------------------------------------------

    def get_records(self, context: Context | None) -> Iterable[Record]:
        tap = self._owner
        run = tap.sync_run
        children = {
            child.name: child for child in self.child_streams if isinstance(child, MarketoRecordStream)
        }
        opp_fields = _requested(children.get(OPPORTUNITIES))
        role_fields = _requested(children.get(OPPORTUNITY_ROLES))
        if opp_fields is None and role_fields is None:
            return
        sources = key_sources(self.config, check_files=True)
        if not sources:
            self.logger.warning(
                "No key source is configured, so no opportunity or role can be read: Marketo has no "
                "call that lists them. Set external_opportunity_ids(_file), lead_ids(_file), "
                "lead_id_range or filters."
            )
            return
        plans = []
        for source in sources:
            plan = make_plan(source.obj, source.field, opportunity_fields=opp_fields, role_fields=role_fields)
            assert plan is not None
            plans.append(plan)
        scans = [source.scan() for source in sources]
        fingerprint = self._fingerprint(sources, scans, opp_fields, role_fields)
        resume = self._resume_point(fingerprint)
        started_at = resume["started_at"] if resume else _seconds_iso(tap.initialized_at / 1000)
        run.signpost = started_at
        first_source = resume["source_index"] if resume else 0
        dry_run = self.ABORT_AT_RECORD_COUNT is not None
        every = int(self.config.get("progress_log_batches") or 10)

        # Per run: a resumed run starts with empty sets (see README, "Stopping and resuming").
        with RunSeen() as seen:
            for index, (source, plan, (key_count, _)) in enumerate(zip(sources, plans, scans, strict=True)):
                if index < first_source:
                    self.logger.info("Key source %s: finished by the stopped run, skipped", source.name)
                    continue
                skip = resume["batches_done"] if resume and index == first_source else 0
                total_batches = math.ceil(key_count / MAX_BATCH)
                self.logger.info(
                    "Key source %s: %s (%s keys, %s batches of %s; %s)%s",
                    source.name,
                    source.description,
                    f"{key_count:,}",
                    f"{total_batches:,}",
                    MAX_BATCH,
                    _describe_plan(plan.primary, plan.primary_field, plan.emit_primary, plan.follow_up),
                    f"; resuming after batch {skip:,}" if skip else "",
                )
                progress = _Progress(
                    self.logger,
                    tap,
                    source=source.name,
                    total_batches=total_batches,
                    skipped=skip,
                    every=every,
                )
                pipeline = BatchPipeline(
                    tap.marketo,
                    plan,
                    seen,
                    workers=tap.marketo.settings.max_concurrent_requests,
                    window=2 * tap.marketo.settings.max_concurrent_requests,
                    # A connection test stops after its first batch: that batch must bring its own
                    # linked records.
                    pool_batches=1 if dry_run else FOLLOW_UP_POOL_BATCHES,
                )
                batches = (
                    (number, keys)
                    for number, keys in enumerate(chunked(source.values()), start=1)
                    if number > skip
                )
                try:
                    for result in pipeline.run(batches):
                        run.current = result
                        yield {"source": source.name, "batch": result.number, "keys": result.key_count}
                        # Every selected child has now emitted this batch's records.
                        run.current = None
                        tap.flush_output()
                        run.queries.add(result.queries)
                        run.keys += result.key_count
                        if not dry_run and result.complete_through > progress.checkpoint:
                            done = result.complete_through
                            self._save_checkpoint(fingerprint, started_at, index, source.name, done)
                            progress.checkpoint = done
                        progress.batch_done(result)
                except (MarketoQuotaExceededError, CallBudgetExhaustedError) as exc:
                    raise self._stopped(exc, source.name, progress) from exc
                progress.finished()
                if not dry_run:
                    following = sources[index + 1].name if index + 1 < len(sources) else None
                    self._save_checkpoint(fingerprint, started_at, index + 1, following, 0)
        for child in children.values():
            if child.selected:
                child.log_bookmark_outcome()
        if not dry_run:
            self.stream_state.pop(CHECKPOINT, None)
            tap.state_writer.write_state(tap.state)
            self.logger.info("All key sources finished; the next run starts from the first batch again")

    def _fingerprint(
        self,
        sources: list[KeySource],
        scans: list[tuple[int, str]],
        opp_fields: tuple[str, ...] | None,
        role_fields: tuple[str, ...] | None,
    ) -> str:
        bookmarks = self.tap_state.get("bookmarks", {})
        parts = {
            "version": CHECKPOINT_VERSION,
            "sources": [[s.name, count, digest] for s, (count, digest) in zip(sources, scans, strict=True)],
            "opportunity_fields": opp_fields,
            "role_fields": role_fields,
            "start_date": self.config.get("start_date"),
            "bookmarks": {
                name: bookmarks.get(name, {}).get("replication_key_value")
                for name in (OPPORTUNITIES, OPPORTUNITY_ROLES)
            },
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def _resume_point(self, fingerprint: str) -> Mapping[str, Any] | None:
        checkpoint = self.stream_state.get(CHECKPOINT)
        if not isinstance(checkpoint, Mapping):
            return None
        if checkpoint.get("fingerprint") != fingerprint:
            self.logger.warning(
                "State holds a checkpoint of a stopped run, but the key sources, selected fields, "
                "start_date or bookmarks differ now; starting from the first batch"
            )
            return None
        self.logger.info(
            "Resuming the run started at %s: key source %s, after batch %s",
            checkpoint.get("started_at"),
            checkpoint.get("source"),
            checkpoint.get("batches_done"),
        )
        return checkpoint

    def _save_checkpoint(
        self, fingerprint: str, started_at: str, source_index: int, source: str | None, batches_done: int
    ) -> None:
        # One assignment of a new dict, so a STATE written by a signal handler sees old or new.
        self.stream_state[CHECKPOINT] = {
            "fingerprint": fingerprint,
            "started_at": started_at,
            "source_index": source_index,
            "source": source,
            "batches_done": batches_done,
        }
        self._owner.state_writer.write_state(self._owner.state)

    def _stopped(self, exc: Exception, source: str, progress: _Progress) -> SyncStoppedError:
        if isinstance(exc, MarketoQuotaExceededError):
            reason = "Marketo's daily API quota is used up (error 607; it resets at 12:00 AM US Central time)"
        else:
            reason = f"the daily_call_budget of {self.config.get('daily_call_budget')} calls is used up"
        done = progress.checkpoint
        message = (
            f"Stopped early: {reason}. Key source {source}: {done:,} of {progress.total_batches:,} batches "
            f"are done and in the last STATE message; run the tap again with that state to resume after "
            f"batch {done:,}."
        )
        self.logger.error(message)
        self._owner.write_closing_state()
        self._owner.log_call_summary()
        return SyncStoppedError(message)


class MarketoRecordStream(Stream):
    """Opportunities or opportunity roles of the current key batch (a child of key_batches)."""

    parent_stream_type = KeyBatchesStream
    # One bookmark per stream, not one per key batch.
    state_partitioning_keys: ClassVar[list[str]] = []
    # RecordCoercer already emits exactly the schema's properties as JSON-ready values of their
    # types (str, int, bool, finite Decimal, None); the SDK's conformance would return them unchanged.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(
        self,
        tap: TapMarketoOpps,
        *,
        name: str,
        obj: MarketoObject,
        schema: dict[str, Any],
        key_properties: list[str],
        replication_key: str | None,
    ) -> None:
        super().__init__(tap, schema=schema, name=name)
        self._owner = tap
        self.marketo_object = obj
        self.primary_keys = key_properties
        self.replication_key = replication_key
        self._coercer = RecordCoercer(name, schema, tap.sync_run.unreadable, self.logger)
        self._fields: tuple[str, ...] | None = None
        self._second: BookmarkSecond | None = None

    def requested_fields(self) -> tuple[str, ...]:
        """The selected properties: what the query asks for and every record carries."""
        if self._fields is None:
            self._fields = tuple(
                name
                for name in self.schema.get("properties", {})
                if self.mask.get(("properties", name), True)
            )
        return self._fields

    def get_replication_key_signpost(self, context: Context | None = None) -> Any:
        if not self.is_timestamp_replication_key:
            return None
        return self._owner.sync_run.signpost

    def get_records(self, context: Context | None) -> Iterable[Record]:
        run = self._owner.sync_run
        batch = run.current
        if batch is None or context is None or context.get("batch") != batch.number:
            raise RuntimeError(f"{self.name} is synced only by key_batches, one key batch at a time")
        fields = self.requested_fields()
        since = self._since(context)
        key = self.replication_key
        second = self._bookmark_second(since)
        for raw in batch.records(self.marketo_object):
            record = self._coercer.coerce(raw, fields)
            run.count(run.read, self.name)
            value = record.get(key) if key is not None and second is not None else None
            if second is not None and value is not None:
                moment = dt.datetime.fromisoformat(value)
                if self.name not in run.newest or moment > run.newest[self.name]:
                    run.newest[self.name] = moment
                if since is not None and moment < since:
                    run.count(run.filtered, self.name)
                    continue
                if second.seen(moment, record):
                    run.count(run.unchanged, self.name)
                    continue
            run.count(run.emitted, self.name)
            yield record

    def _since(self, context: Context) -> dt.datetime | None:
        """Records updated before this are not emitted (bookmark or start_date)."""
        if self.replication_method != REPLICATION_INCREMENTAL or not self.is_timestamp_replication_key:
            return None
        return self.get_starting_timestamp(context)

    def _bookmark_second(self, since: dt.datetime | None) -> BookmarkSecond | None:
        """This run's tracker of the bookmark second (None when the stream is not incremental)."""
        incremental = self.replication_method == REPLICATION_INCREMENTAL and self.is_timestamp_replication_key
        if self._second is None and incremental:
            saved = self.stream_state.get(AT_BOOKMARK)
            bookmark = self.stream_state.get("replication_key_value")
            # Only the set saved with this very bookmark, and only when the run filters by it.
            usable = (
                isinstance(saved, Mapping)
                and _same_moment(saved.get("updatedAt"), bookmark)
                and since is not None
                and _same_moment(bookmark, since.isoformat())
            )
            signpost = self._owner.sync_run.signpost
            self._second = BookmarkSecond(
                since=since,
                saved=saved if usable else None,
                limit=_parse_moment(signpost) if signpost else None,
            )
        return self._second

    def _increment_stream_state(self, latest_record: Record, *, context: Context | None = None) -> None:
        """Put our own note on the running maximum before the SDK's first increment of a run.

        Records come in key-batch order, not by updatedAt, so the SDK keeps the maximum in
        progress markers and promotes it only when the run finishes. Finding no marker, it would
        log "Stream is assumed to be unsorted, progress is not resumable if interrupted" and
        write that note into every STATE. Untrue here: a stopped run resumes after
        bookmarks.key_batches.checkpoint. With the marker present the SDK says neither.
        """
        if latest_record and self.replication_method == REPLICATION_INCREMENTAL and self.replication_key:
            state = self.state_manager.get_context_state(context)
            state.setdefault(PROGRESS_MARKERS, {PROGRESS_MARKER_NOTE: RESUME_NOTE})
        super()._increment_stream_state(latest_record, context=context)

    def finalize_state_progress_markers(self, state: dict | None = None) -> None:
        """At the end of a finished run: promote the bookmark (SDK), then store its second's records."""
        super().finalize_state_progress_markers(state)
        if state or self._second is None:
            return
        bookmark = self.stream_state.get("replication_key_value")
        at_bookmark = self._second.state_for(bookmark)
        if at_bookmark is None:
            self.stream_state.pop(AT_BOOKMARK, None)
        else:
            self.stream_state[AT_BOOKMARK] = at_bookmark
        self._owner.state_writer.write_state(self._owner.state)

    def log_bookmark_outcome(self) -> None:
        """Say what the bookmark did; warn when it is newer than every record read (a reset instance)."""
        run = self._owner.sync_run
        unchanged = run.unchanged.get(self.name, 0)
        if unchanged:
            self.logger.info(
                "%s: %s records unchanged since the run that saved the bookmark (same updatedAt second, "
                "same values) were not emitted again",
                self.name,
                f"{unchanged:,}",
            )
        bookmark = self.stream_state.get("replication_key_value")
        newest = run.newest.get(self.name)
        if bookmark is None or newest is None or self._second is None:
            return
        try:
            saved = _parse_moment(str(bookmark))
        except ValueError:
            return
        if newest < saved and not run.emitted.get(self.name):
            self.logger.warning(
                "%s: the saved bookmark (updatedAt %s) is newer than every one of the %s records read "
                "this run (the newest was updated at %s), so none was emitted. If the Marketo instance "
                "was reset or restored, or this state belongs to another instance, run once with "
                "--full-refresh (meltano run --full-refresh ...; outside Meltano: without --state) to read "
                "everything again.",
                self.name,
                bookmark,
                f"{run.read.get(self.name, 0):,}",
                newest.isoformat(),
            )


class _FieldsStream(Stream):
    """Field metadata of one object; FULL_TABLE."""

    primary_keys: ClassVar[list[str]] = ["name"]
    marketo_object: ClassVar[MarketoObject]

    def __init__(self, tap: TapMarketoOpps, *, name: str, schema: dict[str, Any]) -> None:
        super().__init__(tap, schema=schema, name=name)
        self._owner = tap

    def get_records(self, context: Context | None) -> Iterable[Record]:
        try:
            yield from self._records()
        except (MarketoQuotaExceededError, CallBudgetExhaustedError) as exc:
            message = f"Stopped early while reading {self.name}: {exc}. Run the tap again to finish."
            self.logger.error(message)
            self._owner.write_closing_state()
            self._owner.log_call_summary()
            raise SyncStoppedError(message) from exc

    def _records(self) -> Iterator[Record]:
        raise NotImplementedError


class OpportunityFieldsStream(_FieldsStream):
    """One record per opportunity field: /opportunities/schema/fields.json plus describe flags."""

    marketo_object = MarketoObject.OPPORTUNITY

    def __init__(self, tap: TapMarketoOpps) -> None:
        super().__init__(tap, name=OPPORTUNITY_FIELDS, schema=OPPORTUNITY_FIELDS_SCHEMA)

    def _records(self) -> Iterator[Record]:
        description = self._owner.describe(self.marketo_object)
        listed: set[str] = set()
        for page in self._owner.marketo.opportunity_fields():
            self._owner.count_field_pages(1)
            for raw in page:
                name = str(raw.get("name"))
                if name in listed:
                    continue
                listed.add(name)
                yield field_record(description, name, raw, with_schema_api=True)
        for described in description.fields:
            if described.name not in listed:
                yield field_record(description, described.name, None, with_schema_api=True)


class OpportunityRoleFieldsStream(_FieldsStream):
    """One record per opportunity role field, from the roles describe (roles have no schema API)."""

    marketo_object = MarketoObject.OPPORTUNITY_ROLE

    def __init__(self, tap: TapMarketoOpps) -> None:
        super().__init__(tap, name=OPPORTUNITY_ROLE_FIELDS, schema=ROLE_FIELDS_SCHEMA)

    def _records(self) -> Iterator[Record]:
        description = self._owner.describe(self.marketo_object)
        for described in description.fields:
            yield field_record(description, described.name, None, with_schema_api=False)


class BookmarkSecond:
    """The records at the newest `updatedAt` second of a run, and those its predecessor saved.

    `saved` is the `at_bookmark` state of the run that set the current bookmark: {"updatedAt": the
    bookmark, "records": {marketoGUID: digest}}. `seen` tells whether a record is exactly one of
    those (same second as the bookmark `since`, same digest of every emitted value) and tracks the newest
    second up to `limit` (the signpost, which caps the next bookmark) for `state_for`.
    """

    def __init__(
        self, *, since: dt.datetime | None, saved: Mapping[str, Any] | None, limit: dt.datetime | None
    ) -> None:
        self._since = since
        records = saved.get("records") if saved else None
        self._saved: Mapping[str, str] = records if isinstance(records, Mapping) else {}
        self._limit = limit
        self._at: dt.datetime | None = None
        self._records: dict[str, str] = {}

    def seen(self, moment: dt.datetime, record: Mapping[str, Any]) -> bool:
        """Whether `record` (updated at `moment`, not before `since`) was emitted by the saving run."""
        guid = record.get("marketoGUID")
        if not isinstance(guid, str):
            return False
        if self._limit is not None and moment > self._limit:
            return False  # cannot be the next bookmark's second
        if self._at is not None and moment < self._at:
            # Older than the newest second so far: not tracked; skippable only at the saved second.
            return moment == self._since and self._saved.get(guid) == _digest(record)
        digest = _digest(record)
        if self._at is None or moment > self._at:
            self._at, self._records = moment, {}
        self._records[guid] = digest
        return moment == self._since and self._saved.get(guid) == digest

    def state_for(self, bookmark: Any) -> dict[str, Any] | None:
        """The `at_bookmark` state for the promoted bookmark, or None if this run saw no record at it."""
        if self._at is None or bookmark is None or not _same_moment(self._at.isoformat(), bookmark):
            return None
        return {"updatedAt": bookmark, "records": dict(sorted(self._records.items()))}


# ---- helpers ---------------------------------------------------------------------------------


def _digest(record: Mapping[str, Any]) -> str:
    """A digest of every emitted value (128 bits: a collision would skip a changed record)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _same_moment(left: Any, right: Any) -> bool:
    """Two ISO timestamps name the same instant (they may differ in form, e.g. Z and +00:00)."""
    if not isinstance(left, str) or not isinstance(right, str):
        return False
    try:
        return _parse_moment(left) == _parse_moment(right)
    except ValueError:
        return False


def _parse_moment(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _requested(stream: MarketoRecordStream | None) -> tuple[str, ...] | None:
    if stream is None or not stream.selected:
        return None
    return stream.requested_fields()


def _seconds_iso(epoch_seconds: float) -> str:
    """UTC ISO timestamp to the second, in the same form as coerced Marketo datetimes."""
    moment = dt.datetime.fromtimestamp(int(epoch_seconds), tz=dt.timezone.utc)
    return moment.isoformat()


def _describe_plan(
    primary: MarketoObject, field_name: str, emit: bool, follow_up: MarketoObject | None
) -> str:
    text = f"{_plural(primary)} by {field_name}"
    if not emit:
        text += " (only to find the linked records)"
    if follow_up is not None:
        text += f", then their {_plural(follow_up)} by externalOpportunityId"
    return text


def _plural(obj: MarketoObject) -> str:
    return "opportunities" if obj is MarketoObject.OPPORTUNITY else "opportunity roles"


class _Progress:
    """Progress of one key source: logs every N batches and at the end."""

    def __init__(
        self,
        logger: logging.Logger,
        tap: TapMarketoOpps,
        *,
        source: str,
        total_batches: int,
        skipped: int,
        every: int,
    ) -> None:
        self._logger = logger
        self._tap = tap
        self._source = source
        self.total_batches = total_batches
        self.last_batch = skipped
        self.checkpoint = skipped  # the last batch in a STATE message: a resume starts after it
        self._every = max(every, 1)
        self._started = time.monotonic()
        self._calls_at_start = tap.marketo.stats.calls
        self._keys = 0
        self._done = 0

    def batch_done(self, result: BatchResult) -> None:
        self.last_batch = result.number
        self._keys += result.key_count
        self._done += 1
        if self._done % self._every == 0:
            self._log()

    def finished(self) -> None:
        self._log(final=True)

    def _log(self, *, final: bool = False) -> None:
        run = self._tap.sync_run
        elapsed = max(time.monotonic() - self._started, 1e-6)
        calls = self._tap.marketo.stats.calls - self._calls_at_start
        remaining = max(self.total_batches - self.last_batch, 0)
        eta = elapsed / self._done * remaining if self._done else 0.0
        emitted = ", ".join(f"{name} {count:,}" for name, count in sorted(run.emitted.items())) or "none"
        self._logger.info(
            "Key source %s: %s batch %s of %s (%.1f%%), %s keys this run; records emitted so far: %s; "
            "%s calls (%.1f calls/min)%s",
            self._source,
            "finished at" if final else "at",
            f"{self.last_batch:,}",
            f"{self.total_batches:,}",
            100.0 * self.last_batch / self.total_batches if self.total_batches else 100.0,
            f"{self._keys:,}",
            emitted,
            f"{calls:,}",
            calls / elapsed * 60.0,
            "" if final else f"; about {_duration(eta)} left",
        )


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
