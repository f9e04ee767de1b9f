"""target-marketo-opps: a Singer target for Marketo Opportunities and Opportunity Roles."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import sys
import typing as t
from collections.abc import Sequence
from pathlib import PurePath

from singer_sdk import Target
from singer_sdk.mapper import RemoveRecordTransform

from marketo_api import (
    CrmSyncEnabledError,
    MarketoClient,
    MarketoError,
    MarketoObject,
    ObjectDescription,
    Reason,
)
from marketo_singer import ConnectorConfigValidation

from .coordinator import Coordinator, crm_error
from .dryrun import DryRunCoordinator
from .errors import BatchFileError, InputLineError, TargetRunError, TooManyRejectionsError, UnknownStreamError
from .ledger import Ledger, LedgerError, UnchangedRule, instance_of
from .payloads import PayloadBuilder
from .reader import FATAL_INPUT_ERRORS, SDK_INPUT_ERRORS, NumberedReader, batch_compression, batch_records
from .records import INVALID_RECORD, Item, deletion
from .results import ResultsFileError, ResultsLog
from .sender import BatchSender
from .settings import DEFAULT_STREAM_OBJECTS, TargetSettings, config_errors, config_jsonschema
from .sinks import DiscardSink, MarketoSink
from .terms import SYNC, Action, KeyMode
from .writer import WriteCoordinator

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk import about
    from singer_sdk.singerlib.encoding.base import GenericSingerReader
    from singer_sdk.sinks import Sink


__all__ = [
    "InputLineError",
    "NumberedReader",
    "TargetMarketoOpps",
    "TooManyRejectionsError",
    "UnknownStreamError",
]

#: `--about` text of singer-sdk's built-in `load_method`, which this target does not use.
LOAD_METHOD_DESCRIPTION = (
    "singer-sdk built-in, without effect in this target: records are written as the action setting "
    "says (createOrUpdate, createOnly or updateOnly) and deleted when _sdc_deleted_at holds a timestamp."
)


class TargetMarketoOpps(ConnectorConfigValidation, Target):
    """Writes Adobe Marketo Engage Opportunities and Opportunity Roles (sync and delete).

    Opportunities are written before the roles that reference them; every input record ends
    in one outcome (created, updated, deleted, skipped by Marketo, rejected by the target),
    optionally listed in a JSONL results file; STATE is emitted only once every record before
    it has its outcome on disk.
    """

    name = "target-marketo-opps"
    package_name = "marketo-opps"
    config_jsonschema: t.ClassVar[dict] = config_jsonschema()
    default_sink_class = MarketoSink
    message_reader_class = NumberedReader

    #: The client to build (tests substitute a subclass that still talks HTTP to the sandbox).
    client_class: t.ClassVar[type[MarketoClient]] = MarketoClient
    #: Waits before each retry round of transiently skipped records (None: BatchSender's default).
    transient_retry_delays: t.ClassVar[Sequence[float] | None] = None

    def __init__(
        self,
        *,
        config: dict | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: GenericSingerReader | None = None,
    ) -> None:
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
            message_reader=message_reader,
        )
        self.settings = TargetSettings.from_config(self.config)
        self.results = ResultsLog(self.settings.results_path)
        self.ledger: Ledger | None = None
        if self.settings.write_ledger_path:
            self.ledger = Ledger(
                self.settings.write_ledger_path,
                instance_of(self.settings.connection),
                read_only=self.settings.dry_run,  # the dry run never writes it
            )
        self._records_seen = 0
        self._states: list[tuple[int, dict]] = []  # (records received before it, state)
        self._last_emitted: dict | None = None
        self._end_of_input = False
        self._client: MarketoClient | None = None
        self._descriptions: dict[MarketoObject, ObjectDescription] = {}
        self._builders: dict[MarketoObject, PayloadBuilder] = {}
        self._coordinator: Coordinator | None = None
        self._closed = False
        self._batch_source: tuple[str, int] | None = None  # (file, line) of the record being read
        if isinstance(self.message_reader, NumberedReader):
            # An unwritable results_path stops the run before anything is sent; an input error
            # still records every outcome known by then.
            self.message_reader.on_start = self._open_files
            self.message_reader.on_failure = self._stop

    def _open_files(self) -> None:
        """Before any input is read or call made: an unusable results or ledger file stops the run."""
        self.results.open()
        if self.ledger is not None:
            self.ledger.open()

    # ---- about ----------------------------------------------------------------------------

    @classmethod
    @override
    def _get_about_info(cls) -> about.AboutInfo:
        # Private: no public hook shapes `--about`'s description.
        info = super()._get_about_info()
        # One paragraph: singer-sdk's Markdown template dedents around it, so an indented
        # docstring line would turn the rest of the page into a code block.
        return dataclasses.replace(info, description=" ".join((cls.__doc__ or "").split()))

    @classmethod
    @override
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        super().append_builtin_config(config_jsonschema)
        load_method = config_jsonschema["properties"].get("load_method")
        if isinstance(load_method, dict):
            load_method["description"] = LOAD_METHOD_DESCRIPTION
            load_method["default"] = "append-only"  # the enum's value, not its repr, in --about

    # ---- configuration ------------------------------------------------------------------

    @override
    def connector_config_errors(self, config: t.Mapping[str, t.Any]) -> list[str]:
        return config_errors(config)

    @property
    @override
    def max_parallelism(self) -> int:
        # All sinks feed one coordinator, which orders streams and runs its own concurrent calls.
        return 1

    @max_parallelism.setter
    def max_parallelism(self, new_value: int) -> None:
        _ = new_value  # fixed at 1; see the getter

    def object_for_stream(self, stream_name: str) -> MarketoObject:
        obj = self.settings.object_for_stream(stream_name)
        if obj is None:
            defaults = ", ".join(DEFAULT_STREAM_OBJECTS)
            raise UnknownStreamError(
                f"Stream {stream_name!r} is not one this target writes: name it {defaults}, map it "
                f'with the stream_objects setting, e.g. {{"{stream_name}": "opportunity"}} or '
                f'{{"{stream_name}": "opportunity_role"}}, or drop it with the stream_maps setting, '
                f'e.g. {{"{stream_name}": "__NULL__"}}'
            )
        return obj

    @override
    def get_sink_class(self, stream_name: str) -> type[Sink]:
        maps = self.mapper.stream_maps.get(stream_name) or []
        if maps and all(isinstance(m, RemoveRecordTransform) for m in maps):
            return DiscardSink  # dropped by stream_maps: none of its records will arrive
        with self._closing_on_error():
            self.object_for_stream(stream_name)  # fail clearly at the SCHEMA message
        return MarketoSink

    # ---- records --------------------------------------------------------------------------

    @property
    def client(self) -> MarketoClient:
        if self._client is None:
            self._client = self.client_class(self.settings.connection)
        return self._client

    @property
    def coordinator(self) -> Coordinator:
        if self._coordinator is None:
            settings = self.settings
            rule = None
            if self.ledger is not None:
                self.ledger.open()
                rule = UnchangedRule(self.ledger, refresh=settings.write_ledger_refresh)
            if settings.dry_run:
                self._coordinator = DryRunCoordinator(
                    self.client,
                    self._descriptions,
                    self.results,
                    self._emit_ready_state,
                    batch_size=settings.batch_size,
                    logger=self.logger,
                    unchanged_rule=rule,
                )
            else:
                sender = BatchSender(
                    self.client, self._descriptions, self.logger, retry_delays=self.transient_retry_delays
                )
                self._coordinator = WriteCoordinator(
                    sender,
                    self.results,
                    self._emit_ready_state,
                    batch_size=settings.batch_size,
                    max_body_bytes=settings.max_body_bytes,
                    max_concurrent=settings.max_concurrent_requests,
                    logger=self.logger,
                    track_presence=settings.action == "createOnly",
                    ledger=self.ledger,
                    unchanged_rule=rule,
                )
        return self._coordinator

    def builder(self, obj: MarketoObject) -> PayloadBuilder:
        """The payload builder for an object, from a describe made once per run."""
        builder = self._builders.get(obj)
        if builder is None:
            description = self._descriptions.get(obj)  # a dry-run lookup may have made it already
            if description is None:
                try:
                    description = self.client.describe(obj)
                except CrmSyncEnabledError as exc:  # role APIs are off altogether with CRM sync
                    raise crm_error(exc) from exc
                self._descriptions[obj] = description
            builder = self._builders[obj] = PayloadBuilder(
                obj,
                description,
                action=self.settings.action,
                dedupe_by=self.settings.dedupe_by,
                max_body_bytes=self.settings.max_body_bytes,
                logger=self.logger,
            )
        return builder

    def accept_record(
        self, stream_name: str, obj: MarketoObject, record: dict, schema_error: str | None
    ) -> None:
        """Called by the sinks for every record, in input order."""
        self._records_seen += 1
        deleted, problem = deletion(record.get("_sdc_deleted_at"))
        with self._closing_on_error():
            item = self.builder(obj).build(
                self._records_seen,
                stream_name,
                record,
                deleted=deleted,
                schema_error=schema_error,
                invalid_value=problem,
            )
            self._note_source(item)
            self.coordinator.accept(item)

    def reject_unreadable(self, stream_name: str, obj: MarketoObject, message: str) -> None:
        """A RECORD whose `record` is not a JSON object: rejected, naming where it came from."""
        self._records_seen += 1
        settings = self.settings
        action, dedupe_by = Action(settings.action), KeyMode(settings.dedupe_by)
        item = Item(self._records_seen, stream_name, obj, SYNC, action, dedupe_by, {})
        self._note_source(item)
        where = f"input line {item.line}"
        if item.batch_file is not None:
            where = f"batch file {item.batch_file} line {item.batch_line} (BATCH message on {where})"
        item.rejection = Reason(code=INVALID_RECORD, message=f"{where}: {message}")
        with self._closing_on_error():
            self.coordinator.accept(item)

    def _note_source(self, item: Item) -> None:
        reader = self.message_reader
        if isinstance(reader, NumberedReader):
            item.line = reader.line_number
        if self._batch_source is not None:
            item.batch_file, item.batch_line = self._batch_source

    # ---- messages -------------------------------------------------------------------------

    @override
    def _process_record_message(self, message_dict: dict) -> None:
        # Private: no public hook runs before a RECORD reaches its sink, and a `record` that is not
        # an object must be rejected naming its line, not crash the SDK's record path.
        record = message_dict.get("record")
        if "record" in message_dict and not isinstance(record, dict):
            self._reject_non_object(message_dict)
            return
        super()._process_record_message(message_dict)

    def _reject_non_object(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"stream", "record"})
        stream_name = message_dict["stream"]
        if stream_name not in self.mapper.stream_maps:
            self._assert_sink_exists(stream_name)
        for stream_map in self.mapper.stream_maps[stream_name]:
            if isinstance(stream_map, RemoveRecordTransform):
                continue  # the stream is dropped by stream_maps
            sink = self.get_sink(stream_map.stream_alias)
            if isinstance(sink, MarketoSink):
                kind = type(message_dict["record"]).__name__
                what = {"list": "array", "str": "string", "NoneType": "null", "bool": "boolean"}.get(
                    kind, kind
                )
                self.reject_unreadable(
                    sink.stream_name, sink.marketo_object, f"'record' is a JSON {what}, not an object"
                )

    @override
    def _process_batch_message(self, message_dict: dict) -> None:
        """Records in BATCH files go the way of RECORD messages: same maps, checks and outcomes.

        Private: the SDK hands BATCH files whole to `Sink.process_batch_files`, past stream maps and
        without a line or an outcome per record.
        """
        self._assert_line_requires(message_dict, requires={"stream", "encoding", "manifest"})
        stream_name = message_dict["stream"]
        compression = batch_compression(message_dict["encoding"])
        manifest = message_dict["manifest"]
        if not isinstance(manifest, list) or not all(isinstance(f, str) for f in manifest):
            raise BatchFileError("'manifest' must be a list of file URLs")
        if stream_name not in self.mapper.stream_maps:
            if self._dropped_by_stream_maps(stream_name):
                # singer-sdk taps apply their own stream_maps to RECORD messages but not to BATCH
                # ones, so a stream dropped there can still arrive here, without its SCHEMA.
                self.logger.info(
                    "BATCH message of stream %r ignored: stream_maps drops the stream", stream_name
                )
                return
            self._assert_sink_exists(stream_name)
        try:
            for url in manifest:
                for number, record in batch_records(url, compression):
                    self._batch_source = (url, number)
                    self._process_record_message({"type": "RECORD", "stream": stream_name, "record": record})
        finally:
            self._batch_source = None

    def flush_all(self) -> None:
        """Send everything pending and wait for the answers (held roles settle at end of input)."""
        if self._coordinator is not None:
            with self._closing_on_error():
                self._coordinator.checkpoint(final=self._end_of_input)

    def _dropped_by_stream_maps(self, stream_name: str) -> bool:
        maps = self.config.get("stream_maps") or {}
        return isinstance(maps, dict) and stream_name in maps and maps[stream_name] in (None, "__NULL__")

    @contextlib.contextmanager
    def _closing_on_error(self) -> t.Iterator[None]:
        """A failure ends the run: record what is known, release threads, connections, the file."""
        try:
            yield
        except Exception:
            self._stop()
            raise

    def _stop(self) -> None:
        """After a failure: record the answers of calls in flight, then close (no new calls).

        Called while the failure propagates; a second error on the way (say, the results file
        still cannot be written) is logged unless it repeats the first.
        """
        if self._closed:
            return
        failure = sys.exc_info()[1]
        reported = {str(failure)} if failure is not None else set()
        coordinator = self._coordinator
        if coordinator is not None and isinstance(failure, FATAL_INPUT_ERRORS):
            self._drain_before_bad_input(reported)
        if coordinator is not None:
            try:
                coordinator.stop()
            except Exception as exc:
                self._log_once(reported, exc)
        try:
            self.close(create_results=False)
        except ResultsFileError as exc:
            self._log_once(reported, exc)

    def _drain_before_bad_input(self, reported: set[str]) -> None:
        """The input before a bad line is good: write it, record its outcomes and its STATE.

        Marketo and the results file still work, so the records read before the line get their
        outcome now instead of waiting for a rerun; the run still fails, naming the line.
        """
        assert self._coordinator is not None
        self._end_of_input = True  # roles still waiting for an opportunity settle now
        try:
            self._coordinator.checkpoint(final=True)
            self._emit_ready_state()
        except Exception as exc:
            self._log_once(reported, exc)

    def _log_once(self, reported: set[str], error: BaseException) -> None:
        if str(error) not in reported:
            reported.add(str(error))
            self.logger.error("While recording the outcomes known so far: %s", error)

    # ---- state ----------------------------------------------------------------------------

    @override
    def _process_state_message(self, message_dict: dict) -> None:
        # Private, as `_write_state_message`: the SDK writes STATE once its sinks drain, with no public
        # hook to hold it until every record before it has an outcome on disk.
        super()._process_state_message(message_dict)
        state = message_dict["value"]
        if self._states and self._states[-1][0] == self._records_seen:
            self._states[-1] = (self._records_seen, state)
        else:
            self._states.append((self._records_seen, state))
        self._emit_ready_state()

    @override
    def _write_state_message(self, state: dict) -> None:
        # Called by drain_all with the latest state; emit only what every record before it allows.
        self.flush_all()
        self._emit_ready_state()

    def _emit_ready_state(self) -> None:
        """Emit the newest STATE whose preceding records all have their outcome on disk."""
        coordinator = self._coordinator
        low = coordinator.low_watermark() if coordinator is not None else self._records_seen + 1
        ready: dict | None = None
        while self._states and self._states[0][0] < low:
            # Like singer-sdk, never emit an empty state (it can wipe Meltano's; meltano/sdk#3000).
            ready = self._states.pop(0)[1] or ready
        if not ready or ready == self._last_emitted:
            return
        self.results.sync()
        super()._write_state_message(copy.deepcopy(ready))
        self._last_emitted = ready

    # ---- end of input ---------------------------------------------------------------------

    @override
    def process_endofpipe(self) -> None:
        self._end_of_input = True
        try:
            super().process_endofpipe()
            self.flush_all()  # also when the input had no STATE message
            self._emit_ready_state()
        finally:
            self.close()
        for line in self.results.summary_lines():
            self.logger.info("%s", line)
        if self._client is not None:
            self.logger.info("Marketo calls: %s", self._client.stats.snapshot())
        limit = self.settings.max_rejections
        if limit is not None and self.results.failures > limit:
            where = (
                f" (one line per record in {self.settings.results_path})"
                if self.settings.results_path
                else ""
            )
            raise TooManyRejectionsError(
                f"{self.results.failures} records were rejected or skipped, more than max_rejections="
                f"{limit}; every other record was processed{where}"
            )

    def close(self, *, create_results: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._coordinator is not None:
                self._coordinator.close()
        finally:
            try:
                if self.ledger is not None:
                    self.ledger.close()
            finally:
                self.results.close(create=create_results)
                if self._client is not None:
                    self._client.close()

    # ---- CLI ------------------------------------------------------------------------------

    @classmethod
    @override
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        file_input: t.IO[str] | None = None,
    ) -> None:
        try:
            super().invoke(about=about, about_format=about_format, config=config, file_input=file_input)
        except (TargetRunError, MarketoError, ResultsFileError, LedgerError, *SDK_INPUT_ERRORS) as exc:
            cls.logger.error("%s", exc)  # one clear line, no traceback
            sys.exit(1)
