"""The target's settings, declared with singer-sdk's typing helpers, and a typed view of a config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from singer_sdk import typing as th

from marketo_api import MAX_BATCH, MAX_BODY_BYTES, MarketoObject, MarketoSettings, SettingsError
from marketo_singer import SettingsList, config_schema, schema_errors

ACTIONS = ("createOrUpdate", "createOnly", "updateOnly")
DEDUPE_MODES = ("dedupeFields", "idField")

#: Names a `stream_objects` value may use.
OBJECT_NAMES: dict[str, MarketoObject] = {
    "opportunity": MarketoObject.OPPORTUNITY,
    "opportunity_role": MarketoObject.OPPORTUNITY_ROLE,
}
#: Streams routed without any setting (the names tap-marketo-opps emits).
DEFAULT_STREAM_OBJECTS: dict[str, MarketoObject] = {
    "opportunities": MarketoObject.OPPORTUNITY,
    "opportunity_roles": MarketoObject.OPPORTUNITY_ROLE,
}

#: Default of `max_rejections`: any record that is not written fails the run (after every
#: other record was written and every result recorded). See the README for the reasoning.
DEFAULT_MAX_REJECTIONS = 0
#: Smallest body limit accepted; below it not even one realistic record fits.
MIN_BODY_BYTES = 1024


TARGET_SETTINGS = SettingsList(
    th.Property(
        "action",
        th.StringType,
        default="createOrUpdate",
        allowed_values=list(ACTIONS),
        nullable=False,
        title="Action",
        description="How records are written: createOrUpdate (upsert), createOnly (existing records are "
        "skipped by Marketo with reason 1017) or updateOnly (missing records are skipped with reason 1004).",
    ),
    th.Property(
        "dedupe_by",
        th.StringType,
        default="dedupeFields",
        allowed_values=list(DEDUPE_MODES),
        nullable=False,
        title="Dedupe by",
        description="Key Marketo matches records on: dedupeFields (opportunities: externalOpportunityId; "
        "roles: externalOpportunityId + leadId + role) or idField (marketoGUID; only with action "
        "updateOnly).",
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType(minimum=1, maximum=MAX_BATCH),
        default=MAX_BATCH,
        nullable=False,
        title="Batch size (rows)",
        description="Records per Marketo call, at most 300. Batches are also cut so every request body "
        "stays under Marketo's 1 MB limit.",
    ),
    th.Property(
        "stream_objects",
        th.ObjectType(additional_properties=th.StringType(allowed_values=list(OBJECT_NAMES))),
        default={},
        nullable=False,
        title="Stream objects",
        description='Maps stream names to the Marketo object they hold, e.g. {"crm_deals": "opportunity", '
        '"deal_contacts": "opportunity_role"}. Streams named opportunities and opportunity_roles '
        "need no entry; any other unmapped stream stops the run.",
    ),
    th.Property(
        "results_path",
        th.StringType,
        title="Results path",
        description="JSONL file receiving one line per input record (run id, record number, stream, "
        "object, action, key fields, status, marketoGUID, reasons, note). Appended to: earlier runs' "
        "lines stay, and every line carries the id of the run that wrote it. Flushed to disk before "
        "every STATE message.",
    ),
    th.Property(
        "max_rejections",
        th.IntegerType(minimum=0),
        default=DEFAULT_MAX_REJECTIONS,
        title="Max rejections",
        description="Records that may fail (rejected by the target, or skipped by Marketo other than "
        "createOnly's 1017 'already exists' and delete's 1013 'not found') before the run exits "
        "non-zero. Checked at the end, after every record was processed and all results were written. "
        "Default 0: any failed record fails the run. Null: never fail for rejections.",
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        nullable=False,
        title="Dry run",
        description="Write nothing: look every record up by its key (300 per call) and report per record "
        "what would happen (would_create, would_update, would_delete, would_skip, rejected).",
    ),
    th.Property(
        "max_body_bytes",
        th.IntegerType(minimum=MIN_BODY_BYTES, maximum=MAX_BODY_BYTES),
        default=MAX_BODY_BYTES,
        nullable=False,
        title="Max request body bytes",
        description="Upper bound for one request body. Marketo refuses bodies over 1 MB (HTTP 413); lower "
        "it only to leave room for a proxy.",
    ),
    th.Property(
        "write_ledger_path",
        th.StringType,
        title="Write ledger path",
        description="SQLite file (created if missing; its directory must exist) keeping, per record key, "
        "a fingerprint of the values Marketo last accepted from this target. A record whose values "
        "match is reported unchanged and not sent. Deleting the file costs calls, never data. Changes "
        "made in Marketo by anyone else are not seen: use write_ledger_refresh now and then.",
    ),
    th.Property(
        "write_ledger_refresh",
        th.BooleanType,
        default=False,
        nullable=False,
        title="Write ledger refresh",
        description="Ignore the fingerprints in write_ledger_path: send every record and store fresh "
        "fingerprints for what Marketo accepts.",
    ),
)


def config_jsonschema() -> dict[str, Any]:
    """Connection settings shared with the tap, followed by the target's own settings (a new dict)."""
    return config_schema(TARGET_SETTINGS)


_SCHEMA = config_jsonschema()  # for config_errors only; never handed to singer-sdk


@dataclass(frozen=True)
class TargetSettings:
    """A validated config, with defaults applied."""

    connection: MarketoSettings
    action: str = "createOrUpdate"
    dedupe_by: str = "dedupeFields"
    batch_size: int = MAX_BATCH
    max_body_bytes: int = MAX_BODY_BYTES
    stream_objects: Mapping[str, MarketoObject] = field(default_factory=dict)
    results_path: str | None = None
    max_rejections: int | None = DEFAULT_MAX_REJECTIONS
    dry_run: bool = False
    write_ledger_path: str | None = None
    write_ledger_refresh: bool = False

    @property
    def max_concurrent_requests(self) -> int:
        return self.connection.max_concurrent_requests

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TargetSettings:
        """Typed settings; raises SettingsError naming every setting at fault (see config_errors)."""
        settings, errors = _read(config)
        if settings is None:
            raise SettingsError("; ".join(errors))
        return settings

    def object_for_stream(self, stream_name: str) -> MarketoObject | None:
        if stream_name in self.stream_objects:
            return self.stream_objects[stream_name]
        return DEFAULT_STREAM_OBJECTS.get(stream_name)


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """Every problem with a target config, each naming its setting."""
    return _read(config)[1]


def _read(config: Mapping[str, Any]) -> tuple[TargetSettings | None, list[str]]:
    """The typed settings of `config`, or None and what is wrong with it.

    What the JSON Schema refuses (singer-sdk refuses it before the target asks, so there this
    part finds nothing), then the rules it cannot express. The connection settings
    (`MarketoSettings.from_config`) read values as the schema types them, so they are checked
    only on a config the schema accepts.
    """
    errors = schema_errors(_SCHEMA, config)
    typed = not errors
    action = config.get("action") or "createOrUpdate"
    if config.get("dedupe_by") == "idField" and action != "updateOnly":
        errors.append(
            f"dedupe_by idField (match on marketoGUID) only works with action updateOnly, not {action}: "
            "Marketo cannot create a record from a marketoGUID"
        )
    ledger = config.get("write_ledger_path")
    if ledger and ledger == config.get("results_path"):
        errors.append("write_ledger_path must be another file than results_path")
    connection = None
    if typed:
        try:
            connection = MarketoSettings.from_config(config)
        except SettingsError as exc:
            errors.append(str(exc))
    if errors or connection is None:
        return None, errors
    batch_size = config.get("batch_size_rows")
    body = config.get("max_body_bytes")
    settings = TargetSettings(
        connection=connection,
        action=str(action),
        dedupe_by=str(config.get("dedupe_by") or "dedupeFields"),
        batch_size=int(batch_size) if batch_size is not None else MAX_BATCH,
        max_body_bytes=int(body) if body is not None else MAX_BODY_BYTES,
        stream_objects={
            str(name): OBJECT_NAMES[str(value)]
            for name, value in (config.get("stream_objects") or {}).items()
        },
        results_path=config.get("results_path") or None,
        max_rejections=config.get("max_rejections", DEFAULT_MAX_REJECTIONS),
        dry_run=bool(config.get("dry_run", False)),
        write_ledger_path=ledger or None,
        write_ledger_refresh=bool(config.get("write_ledger_refresh", False)),
    )
    return settings, []
