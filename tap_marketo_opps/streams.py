"""Streams of tap-marketo-opps: two record streams fed from one key batch at a time.

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

`key_batches` yields one record per fetched batch (`driver.Driver`); the SDK turns each into
a context (`get_child_context`) and syncs every selected child with it. The context carries
the batch's records (`driver.KeyBatch`), so a child only coerces and filters them and emits
through the normal SDK path: catalog selection, stream maps, flattening, STATE and `--test`
behave as for any parent/child tap. A deselected child is simply not synced; the driver still
fetches what it needs (e.g. roles to find opportunity ids) but asks only for
`externalOpportunityId`. Checkpoints: `checkpoint`; the bookmark's second: `bookmark`; the
field streams: `field_streams`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Stream
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context, Record
from singer_sdk.mapper import RemoveRecordTransform, StreamMap
from singer_sdk.singerlib.catalog import REPLICATION_INCREMENTAL

from marketo_api import MarketoObject

from .bookmark import AT_BOOKMARK, BOOKMARK, BookmarkSecond, parse_moment
from .driver import Driver, KeyBatch, SyncStoppedError
from .schemas import KEY_BATCHES_SCHEMA, RecordCoercer

if TYPE_CHECKING:
    from singer_sdk.helpers._batch import BatchConfig

    from .tap import TapMarketoOpps

__all__ = [
    "AT_BOOKMARK",
    "KEY_BATCHES",
    "OPPORTUNITIES",
    "OPPORTUNITY_FIELDS",
    "OPPORTUNITY_ROLES",
    "OPPORTUNITY_ROLE_FIELDS",
    "RESUME_NOTE",
    "KeyBatchesStream",
    "MarketoRecordStream",
    "SyncStoppedError",
]

# The SDK's keys for the running maximum of an unsorted stream, and what our note there says.
PROGRESS_MARKERS = "progress_markers"
PROGRESS_MARKER_NOTE = "Note"
RESUME_NOTE = (
    "Running maximum of updatedAt, promoted to the bookmark when the run finishes. "
    "A stopped run resumes from the key-batch state in bookmarks.key_batches."
)
OPPORTUNITIES = MarketoObject.OPPORTUNITY.stream_name
OPPORTUNITY_ROLES = MarketoObject.OPPORTUNITY_ROLE.stream_name
OPPORTUNITY_FIELDS = MarketoObject.OPPORTUNITY.fields_stream_name
OPPORTUNITY_ROLE_FIELDS = MarketoObject.OPPORTUNITY_ROLE.fields_stream_name
KEY_BATCHES = "key_batches"


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
        """Never emitted, whatever the catalog or the configured stream maps say.

        Overridden because the SDK's maps tie two things together: a map that drops the
        records (e.g. from `__else__: null`) also stops the children's sync, since the SDK syncs
        them only for records the first map lets through; one that keeps them writes them.
        """
        if self._maps is None:
            self._maps = [_InternalOnlyMap(self.name, self.schema, self.primary_keys, None)]
        return self._maps

    def get_batch_config(self, config: Mapping[str, Any]) -> BatchConfig | None:
        """The driver's own records are never written, not even as BATCH files."""
        return None

    def get_records(self, context: Context | None) -> Iterable[Record]:
        children = [
            child for child in self.child_streams if isinstance(child, MarketoRecordStream) and child.selected
        ]
        return Driver(self, self._owner, children).batches()

    def get_child_context(self, record: Record, context: Context | None) -> Context | None:
        """The batch's records go to the children inside their context."""
        if not isinstance(record, KeyBatch):
            raise TypeError(f"{self.name} records come from the driver only")
        return record.child_context()

    def log_sync_costs(self) -> None:
        """Called by the SDK once every stream has synced: log the run's Marketo calls."""
        self._owner.log_call_summary()


class MarketoRecordStream(Stream):
    """Opportunities or opportunity roles of the current key batch (a child of key_batches)."""

    parent_stream_type = KeyBatchesStream
    # One bookmark per stream, not one per key batch: no key of the context partitions state.
    # (`ignore_parent_replication_key` stays False: the parent is FULL_TABLE already, and True
    # would only make the SDK warn that it forces it.)
    state_partitioning_keys: ClassVar[list[str]] = []
    # RecordCoercer already emits exactly the schema's properties as JSON-ready values of their
    # types (str, int, bool, finite Decimal, None); the SDK's conformance would return them unchanged.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(
        self,
        tap: TapMarketoOpps,
        *,
        obj: MarketoObject,
        schema: dict[str, Any],
        key_properties: list[str],
        replication_key: str | None,
    ) -> None:
        super().__init__(tap, schema=schema, name=obj.stream_name)
        self._owner = tap
        self.marketo_object = obj
        self.primary_keys = key_properties
        self.replication_key = replication_key
        self._coercer = RecordCoercer(self.name, schema, tap.sync_run.unreadable, self.logger)
        self._fields: tuple[str, ...] | None = None
        self._second: BookmarkSecond | None = None
        self._unmarked = True  # no record of this run has reached the SDK's bookmark yet

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
        if not isinstance(context, KeyBatch):
            raise RuntimeError(f"{self.name} is synced only by key_batches, one key batch at a time")
        run = self._owner.sync_run
        fields = self.requested_fields()
        since = self._since(context)
        key = self.replication_key
        second = self._bookmark_second(since)
        for raw in context.result.records(self.marketo_object):
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

    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """Before the SDK's first bookmark increment of the run, put our note on the running maximum.

        Records come in key-batch order, not by updatedAt, so the SDK keeps the maximum in
        progress markers and promotes it only when the run finishes. Finding no marker, it would
        log "Stream is assumed to be unsorted, progress is not resumable if interrupted" and
        write that note into every STATE. Untrue here: a stopped run resumes after
        bookmarks.key_batches.checkpoint. With the marker present the SDK says neither. The SDK
        calls this hook for each record after its record-limit check and right before it writes
        the record and increments the bookmark, so the note appears exactly when the SDK's would.
        """
        if self._unmarked:
            self._unmarked = False
            if self.replication_method == REPLICATION_INCREMENTAL and self.replication_key:
                self.stream_state.setdefault(PROGRESS_MARKERS, {PROGRESS_MARKER_NOTE: RESUME_NOTE})
        return row

    def generate_child_contexts(self, record: Record, context: Context | None) -> Iterable[Context | None]:
        """None: this stream has no children, so the SDK need not copy the context per record."""
        return ()

    def _since(self, context: Context) -> dt.datetime | None:
        """Records updated before this are not emitted (bookmark or start_date)."""
        if self.replication_method != REPLICATION_INCREMENTAL or not self.is_timestamp_replication_key:
            return None
        return self.get_starting_timestamp(context)

    def _bookmark_second(self, since: dt.datetime | None) -> BookmarkSecond | None:
        """This run's tracker of the bookmark second (None when the stream is not incremental)."""
        incremental = self.replication_method == REPLICATION_INCREMENTAL and self.is_timestamp_replication_key
        if self._second is None and incremental:
            signpost = self._owner.sync_run.signpost
            self._second = BookmarkSecond.for_run(self.stream_state, since=since, signpost=signpost)
        return self._second

    def finalize_state_progress_markers(self, state: dict | None = None) -> None:
        """At the end of a finished run: promote the bookmark (SDK), then store its second's records.

        Overridden because no public hook runs after the SDK has promoted the bookmark.
        """
        super().finalize_state_progress_markers(state)
        if state or self._second is None:
            return
        at_bookmark = self._second.state_for(self.stream_state.get(BOOKMARK))
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
        bookmark = self.stream_state.get(BOOKMARK)
        newest = run.newest.get(self.name)
        if bookmark is None or newest is None or self._second is None:
            return
        try:
            saved = parse_moment(str(bookmark))
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
