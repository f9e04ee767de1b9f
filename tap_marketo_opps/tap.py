"""TapMarketoOpps: Adobe Marketo Engage Opportunities and Opportunity Roles as Singer streams."""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import IO, Any

import click
from singer_sdk import Stream, Tap
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib import StateMessage

from marketo_api import (
    MAX_BATCH,
    SETTINGS_JSON_SCHEMA,
    MarketoClient,
    MarketoError,
    MarketoObject,
    MarketoSettings,
    ObjectDescription,
    SettingsError,
    json_schema_for,
    setting_property,
)
from marketo_singer import ConnectorConfigValidation

from .keys import key_sources
from .output import TapWriter
from .pipeline import interruptible_sleep
from .schemas import LOGGED_UNREADABLE_PER_FIELD, replication_key_for, unreadable_summary
from .streams import (
    KEY_BATCHES,
    OPPORTUNITIES,
    OPPORTUNITY_ROLES,
    KeyBatchesStream,
    MarketoRecordStream,
    OpportunityFieldsStream,
    OpportunityRoleFieldsStream,
    SyncRun,
    SyncStoppedError,
)

_RECORD_STREAMS = {
    OPPORTUNITIES: MarketoObject.OPPORTUNITY,
    OPPORTUNITY_ROLES: MarketoObject.OPPORTUNITY_ROLE,
}


_KEY_FILE_HELP = (
    "One value a line, or a CSV file (comma, tab, semicolon or pipe) with a header row; the key "
    "column is the one named {columns} (case, '_' and '-' are ignored; a one-column file may start "
    "with such a header line). Read line by line, so a file of millions of values works with "
    "constant memory. A relative path is relative to the working directory."
)

TAP_SETTINGS: dict[str, Any] = {
    "start_date": setting_property(
        ["string", "null"],
        "Start date",
        "Emit only records whose updatedAt is at or after this time (ISO 8601). Marketo has no "
        "updatedAt filter, so every key is still queried; older records are dropped by the tap. "
        "Later runs use the saved updatedAt bookmark when it is newer.",
        format="date-time",
    ),
    "external_opportunity_ids": setting_property(
        ["array", "null"],
        "External opportunity IDs",
        "Read these opportunities (by externalOpportunityId) and their roles.",
        items={"type": "string"},
    ),
    "external_opportunity_ids_file": setting_property(
        ["string", "null"],
        "External opportunity IDs file",
        "Path of a file of externalOpportunityIds; like external_opportunity_ids. "
        + _KEY_FILE_HELP.format(columns="externalOpportunityId, opportunityId or id"),
    ),
    "lead_ids": setting_property(
        ["array", "null"],
        "Lead IDs",
        f"Read the roles of these leads (by leadId, {MAX_BATCH} leads a query) and every opportunity "
        "they name (each fetched once per run).",
        items={"type": "integer"},
    ),
    "lead_ids_file": setting_property(
        ["string", "null"],
        "Lead IDs file",
        "Path of a file of lead ids; like lead_ids. " + _KEY_FILE_HELP.format(columns="leadId, lead or id"),
    ),
    "lead_id_range": setting_property(
        ["object", "null"],
        "Lead ID range",
        'Like lead_ids, for every id from start to end inclusive, e.g. {"start": 1, "end": 250000}.',
        properties={
            "start": {"type": "integer", "title": "First lead ID", "description": "First lead id."},
            "end": {"type": "integer", "title": "Last lead ID", "description": "Last lead id (inclusive)."},
        },
        required=["start", "end"],
    ),
    "filters": setting_property(
        ["array", "null"],
        "Filters",
        "More key sources on other searchable fields: a list of {object, field, values}, where "
        "object is opportunity or opportunity_role and field a searchable field of it (e.g. "
        "externalCompanyId, externalSalesPersonId or a searchable custom field). Matching "
        "opportunities come with their roles; matching roles with their opportunities.",
        items={
            "type": "object",
            "properties": {
                "object": {
                    "type": "string",
                    "enum": ["opportunity", "opportunity_role"],
                    "title": "Object",
                    "description": "opportunity or opportunity_role.",
                },
                "field": {
                    "type": "string",
                    "title": "Field",
                    "description": "A searchable field of the object (its describe's searchableFields).",
                },
                "values": {
                    "type": "array",
                    "items": {"type": ["string", "integer"]},
                    "minItems": 1,
                    "title": "Values",
                    "description": "Exact values to match.",
                },
            },
            "required": ["object", "field", "values"],
        },
    ),
    "progress_log_batches": setting_property(
        "integer",
        "Progress log interval (batches)",
        "Log progress (batches done, records, calls, calls per minute, time left) every this "
        "many key batches.",
        default=10,
        minimum=1,
    ),
}


def _config_jsonschema() -> dict[str, Any]:
    schema = copy.deepcopy(SETTINGS_JSON_SCHEMA)
    schema["properties"].update(copy.deepcopy(TAP_SETTINGS))
    return schema


class TapMarketoOpps(ConnectorConfigValidation, Tap):
    """Singer tap for Adobe Marketo Engage Opportunities, Opportunity Roles and their fields."""

    name = "tap-marketo-opps"
    package_name = "marketo-opps"
    dynamic_catalog = True  # discovery calls describe, so --discover needs valid credentials
    config_jsonschema = _config_jsonschema()
    # msgspec where it writes the same bytes as the SDK's writer; RECORDs are not flushed one by one.
    message_writer_class = TapWriter

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._describe_lock = threading.Lock()
        self._descriptions: dict[MarketoObject, ObjectDescription] = {}
        self._field_pages = 0
        self.sync_run = SyncRun()
        super().__init__(*args, **kwargs)

    def connector_config_errors(self, config: Mapping[str, Any]) -> list[str]:
        return _setting_errors(config)

    # ---- command line: a Marketo failure is one clear line and exit code 1, never a traceback ----

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        state: IO[str] | None = None,
        catalog: IO[str] | None = None,
    ) -> None:
        with _one_line_errors(cls):
            super().invoke(
                about=about, about_format=about_format, config=config, state=state, catalog=catalog
            )

    @classmethod
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        with _one_line_errors(cls):
            super().cb_discover(ctx, param, value)

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        with _one_line_errors(cls):
            super().cb_test(ctx, param, value)

    # ---- shared Marketo access ----------------------------------------------------------------

    @cached_property
    def marketo(self) -> MarketoClient:
        """The one client of this run, shared by every stream and worker thread."""
        return MarketoClient(MarketoSettings.from_config(self.config), sleep=interruptible_sleep)

    def describe(self, obj: MarketoObject) -> ObjectDescription:
        """Describe `obj` at most once per run."""
        with self._describe_lock:
            if obj not in self._descriptions:
                description = self.marketo.describe(obj)
                self.logger.info(
                    "Described %s: %d fields, idField %s, searchable %s",
                    obj.label,
                    len(description.fields),
                    description.id_field,
                    ", ".join("+".join(group) for group in description.searchable_fields),
                )
                self._descriptions[obj] = description
            return self._descriptions[obj]

    def write_closing_state(self) -> None:
        """STATE as the last message of a stopped run, even when it repeats the previous one.

        Records of batches after the checkpoint may follow the last STATE the SDK wrote; ending
        with the STATE makes the output say plainly where a resumed run starts.
        """
        self.write_message(StateMessage(value=self.state))

    def flush_output(self) -> None:
        """Send the RECORD messages written so far (the writer flushes at every other message)."""
        if isinstance(self.message_writer, TapWriter):
            self.message_writer.flush()

    def count_field_pages(self, pages: int) -> None:
        self._field_pages += pages

    # ---- discovery ----------------------------------------------------------------------------

    def discover_streams(self) -> list[Stream]:
        """The record streams take their schemas from the catalog when one is given (no describe)."""
        streams: list[Stream] = [KeyBatchesStream(self)]
        catalog = self.input_catalog
        for name, obj in _RECORD_STREAMS.items():
            if catalog is None:
                description = self.describe(obj)
                schema = json_schema_for(description)
                key_properties = [description.id_field]
                replication_key = replication_key_for(schema)
            else:
                entry = catalog.get_stream(name)
                if entry is None:
                    continue
                schema = entry.schema.to_dict()
                key_properties = list(entry.key_properties or ["marketoGUID"])
                replication_key = entry.replication_key or replication_key_for(schema)
            streams.append(
                MarketoRecordStream(
                    self,
                    name=name,
                    obj=obj,
                    schema=schema,
                    key_properties=key_properties,
                    replication_key=replication_key,
                )
            )
        streams += [OpportunityFieldsStream(self), OpportunityRoleFieldsStream(self)]
        for stream in streams:
            if _EXPLAINED_FAILURES not in stream.logger.filters:
                stream.logger.addFilter(_EXPLAINED_FAILURES)
        return streams

    @property
    def catalog_dict(self) -> dict:
        """The discovered catalog, without the internal key_batches stream."""
        catalog = super().catalog_dict
        catalog["streams"] = [s for s in catalog.get("streams", []) if s.get("tap_stream_id") != KEY_BATCHES]
        return catalog

    # ---- reporting ----------------------------------------------------------------------------

    @property
    def call_figures(self) -> dict[str, int]:
        """Calls made and the minimum this run needed, by kind (see log_call_summary)."""
        calls = 0
        describes = 0
        retries = 0
        if "marketo" in self.__dict__:  # else no client was created: nothing was called
            stats = self.marketo.stats.snapshot()
            calls = int(stats["calls"])
            describes = sum(
                n for label, n in stats["calls_by_endpoint"].items() if label.startswith("describe")
            )
            retries = sum(stats["retries_by_code"].values())
        queries = self.sync_run.queries
        return {
            "calls": calls,
            "retries": retries,
            "key_batch_queries": queries.primary,
            "follow_up_queries": queries.follow_up,
            "extra_pages": queries.extra_pages,
            "describes": describes,
            "field_pages": self._field_pages,
            "minimum": queries.calls + describes + self._field_pages,
            "keys": self.sync_run.keys,
        }

    def log_call_summary(self) -> None:
        """Log calls made against the minimum this run needed, and any value emitted as null."""
        figures = self.call_figures
        run = self.sync_run
        self.logger.info(
            "Marketo calls: %s made, of which %s retries; minimum for this run %s = %s key-batch queries "
            "(ceil(keys / %s) per source, %s keys) + %s follow-up queries + %s extra pages + %s describes "
            "+ %s field-list pages. Records emitted: %s; older than the bookmark/start_date, not emitted: %s",
            f"{figures['calls']:,}",
            f"{figures['retries']:,}",
            f"{figures['minimum']:,}",
            f"{figures['key_batch_queries']:,}",
            MAX_BATCH,
            f"{figures['keys']:,}",
            f"{figures['follow_up_queries']:,}",
            f"{figures['extra_pages']:,}",
            figures["describes"],
            figures["field_pages"],
            _counts(run.emitted),
            _counts(run.filtered),
        )
        if run.unreadable:
            self.logger.warning(
                "Values the tap could not read as their field's type were emitted as null (the records "
                "themselves were emitted), by stream.field: %s. The log names the record of the first "
                "%s per field. Check the field's dataType in Marketo against the catalog; rediscover "
                "if it changed.",
                unreadable_summary(run.unreadable),
                LOGGED_UNREADABLE_PER_FIELD,
            )


class _ExplainedFailureFilter(logging.Filter):
    """Drops singer-sdk's "unhandled error while syncing" line when the error is a Marketo one.

    The command line reports that error in one line of its own (see _one_line_errors); the SDK
    logs its line while the exception is being handled, so sys.exc_info() tells which it is.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "An unhandled error occurred while syncing '%s'":
            return True
        return not isinstance(sys.exc_info()[1], (MarketoError, SyncStoppedError))


_EXPLAINED_FAILURES = _ExplainedFailureFilter()


@contextlib.contextmanager
def _one_line_errors(cls: type[TapMarketoOpps]) -> Iterator[None]:
    """Exit 1 with the error's own message: it names the cause (401, host, quota), a traceback adds nothing.

    A stopped run (607, daily_call_budget) has already logged why and written its STATE.
    """
    try:
        yield
    except SyncStoppedError:
        sys.exit(1)
    except MarketoError as exc:
        cls.logger.error("%s", exc)
        sys.exit(1)


def _setting_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks JSON Schema cannot express: the connection settings and the key sources."""
    errors: list[str] = []
    try:
        MarketoSettings.from_config(config)
    except SettingsError as exc:
        errors.append(str(exc))
    try:
        key_sources(config, check_files=False)
    except ConfigValidationError as exc:
        errors.extend(exc.errors or [str(exc)])
    return errors


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counter.items())) or "none"
