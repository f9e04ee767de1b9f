"""TapMarketoOpps: Adobe Marketo Engage Opportunities and Opportunity Roles as Singer streams."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import IO, Any

import click
from singer_sdk import Stream, Tap
from singer_sdk.singerlib import StateMessage

from marketo_api import (
    MAX_BATCH,
    MarketoClient,
    MarketoError,
    MarketoObject,
    MarketoSettings,
    ObjectDescription,
    json_schema_for,
)
from marketo_singer import ConnectorConfigValidation

from .driver import SyncRun, SyncStoppedError
from .field_streams import OpportunityFieldsStream, OpportunityRoleFieldsStream
from .output import TapWriter
from .pipeline import interruptible_sleep
from .progress import counts
from .schemas import LOGGED_UNREADABLE_PER_FIELD, replication_key_for, unreadable_summary
from .settings import config_errors, config_jsonschema
from .streams import KEY_BATCHES, KeyBatchesStream, MarketoRecordStream


class TapMarketoOpps(ConnectorConfigValidation, Tap):
    """Singer tap for Adobe Marketo Engage Opportunities, Opportunity Roles and their fields."""

    name = "tap-marketo-opps"
    package_name = "marketo-opps"
    dynamic_catalog = True  # discovery calls describe, so --discover needs valid credentials
    config_jsonschema = config_jsonschema()
    # msgspec where it writes the same bytes as the SDK's writer; RECORDs are not flushed one by one.
    message_writer_class = TapWriter

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._describe_lock = threading.Lock()
        self._descriptions: dict[MarketoObject, ObjectDescription] = {}
        self._field_pages = 0
        self.sync_run = SyncRun()
        super().__init__(*args, **kwargs)

    def connector_config_errors(self, config: Mapping[str, Any]) -> list[str]:
        return config_errors(config)

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

    def stopped(self, logger: logging.Logger, message: str) -> SyncStoppedError:
        """A run stopped by quota or budget: say why, end with its STATE, report its calls.

        The caller raises the error; the command line then exits 1 without a traceback.
        """
        logger.error(message)
        self.write_closing_state()
        self.log_call_summary()
        return SyncStoppedError(message)

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
        for obj in MarketoObject:
            if catalog is None:
                description = self.describe(obj)
                schema = json_schema_for(description)
                key_properties = [description.id_field]
                replication_key = replication_key_for(schema)
            else:
                entry = catalog.get_stream(obj.stream_name)
                if entry is None:
                    continue
                schema = entry.schema.to_dict()
                key_properties = list(entry.key_properties or ["marketoGUID"])
                replication_key = entry.replication_key or replication_key_for(schema)
            streams.append(
                MarketoRecordStream(
                    self,
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
            counts(run.emitted),
            counts(run.filtered),
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
