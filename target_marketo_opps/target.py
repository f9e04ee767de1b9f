"""target-marketo-opps: a Singer target for Marketo Opportunities and Opportunity Roles."""

from __future__ import annotations

import contextlib
import copy
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
)
from marketo_singer import ConnectorConfigValidation

from .dryrun import DryRunCoordinator
from .records import PayloadBuilder
from .results import ResultsLog
from .settings import DEFAULT_STREAM_OBJECTS, TargetSettings, config_errors, config_jsonschema
from .sinks import DiscardSink, MarketoSink
from .writer import BatchSender, Coordinator, WriteCoordinator, crm_error

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.base import GenericSingerReader
    from singer_sdk.sinks import Sink


class TargetRunError(Exception):
    """Stops the run with one message for the log (no traceback from the CLI)."""


class UnknownStreamError(TargetRunError):
    """A stream that is neither opportunities, opportunity_roles nor mapped by stream_objects."""


class TooManyRejectionsError(TargetRunError):
    """More failed records than `max_rejections`; raised after everything was written."""


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
        self._records_seen = 0
        self._states: list[tuple[int, dict]] = []  # (records received before it, state)
        self._last_emitted: dict | None = None
        self._end_of_input = False
        self._client: MarketoClient | None = None
        self._descriptions: dict[MarketoObject, ObjectDescription] = {}
        self._builders: dict[MarketoObject, PayloadBuilder] = {}
        self._coordinator: Coordinator | None = None
        self._closed = False

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
            if settings.dry_run:
                self._coordinator = DryRunCoordinator(
                    self.client,
                    self._descriptions,
                    self.results,
                    self._emit_ready_state,
                    batch_size=settings.batch_size,
                    logger=self.logger,
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
        deleted_at = record.get("_sdc_deleted_at")
        deleted = deleted_at is not None and deleted_at != ""
        with self._closing_on_error():
            item = self.builder(obj).build(
                self._records_seen, stream_name, record, deleted=deleted, schema_error=schema_error
            )
            self.coordinator.accept(item)

    def flush_all(self) -> None:
        """Send everything pending and wait for the answers (held roles settle at end of input)."""
        if self._coordinator is not None:
            with self._closing_on_error():
                self._coordinator.checkpoint(final=self._end_of_input)

    @contextlib.contextmanager
    def _closing_on_error(self) -> t.Iterator[None]:
        """A failure ends the run: release threads, connections and the results file first."""
        try:
            yield
        except Exception:
            self.close(create_results=False)
            raise

    # ---- state ----------------------------------------------------------------------------

    @override
    def _process_state_message(self, message_dict: dict) -> None:
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
        except (TargetRunError, MarketoError) as exc:
            cls.logger.error("%s", exc)  # one clear line, no traceback
            sys.exit(1)
