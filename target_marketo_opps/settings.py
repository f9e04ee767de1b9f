"""The target's settings: JSON Schema for `--about`/validation and a typed view of a config."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marketo_api import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    SETTINGS_JSON_SCHEMA,
    MarketoObject,
    MarketoSettings,
    SettingsError,
    setting_property,
)

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


TARGET_PROPERTIES: dict[str, Any] = {
    "action": setting_property(
        "string",
        "Action",
        "How records are written: createOrUpdate (upsert), createOnly (existing records are skipped "
        "by Marketo with reason 1017) or updateOnly (missing records are skipped with reason 1004).",
        default="createOrUpdate",
        enum=list(ACTIONS),
    ),
    "dedupe_by": setting_property(
        "string",
        "Dedupe by",
        "Key Marketo matches records on: dedupeFields (opportunities: externalOpportunityId; roles: "
        "externalOpportunityId + leadId + role) or idField (marketoGUID; only with action updateOnly).",
        default="dedupeFields",
        enum=list(DEDUPE_MODES),
    ),
    "batch_size_rows": setting_property(
        "integer",
        "Batch size (rows)",
        "Records per Marketo call, at most 300. Batches are also cut so every request body stays "
        "under Marketo's 1 MB limit.",
        default=MAX_BATCH,
        minimum=1,
        maximum=MAX_BATCH,
    ),
    "stream_objects": setting_property(
        "object",
        "Stream objects",
        'Maps stream names to the Marketo object they hold, e.g. {"crm_deals": "opportunity", '
        '"deal_contacts": "opportunity_role"}. Streams named opportunities and opportunity_roles '
        "need no entry; any other unmapped stream stops the run.",
        default={},
        additionalProperties={"type": "string", "enum": list(OBJECT_NAMES)},
    ),
    "results_path": setting_property(
        ["string", "null"],
        "Results path",
        "JSONL file receiving one line per input record (run id, record number, stream, object, "
        "action, key fields, status, marketoGUID, reasons, note). Appended to: earlier runs' lines "
        "stay, and every line carries the id of the run that wrote it. Flushed to disk before every "
        "STATE message.",
    ),
    "max_rejections": setting_property(
        ["integer", "null"],
        "Max rejections",
        "Records that may fail (rejected by the target, or skipped by Marketo other than createOnly's "
        "1017 'already exists' and delete's 1013 'not found') before the run exits non-zero. "
        "Checked at the end, after every record was processed and all results were written. "
        "Default 0: any failed record fails the run. Null: never fail for rejections.",
        default=DEFAULT_MAX_REJECTIONS,
        minimum=0,
    ),
    "dry_run": setting_property(
        "boolean",
        "Dry run",
        "Write nothing: look every record up by its key (300 per call) and report per record what "
        "would happen (would_create, would_update, would_delete, would_skip, rejected).",
        default=False,
    ),
    "max_body_bytes": setting_property(
        "integer",
        "Max request body bytes",
        "Upper bound for one request body. Marketo refuses bodies over 1 MB (HTTP 413); lower it only "
        "to leave room for a proxy.",
        default=MAX_BODY_BYTES,
        minimum=MIN_BODY_BYTES,
        maximum=MAX_BODY_BYTES,
    ),
    "write_ledger_path": setting_property(
        ["string", "null"],
        "Write ledger path",
        "SQLite file (created if missing; its directory must exist) keeping, per record key, a "
        "fingerprint of the values Marketo last accepted from this target. A record whose values "
        "match is reported unchanged and not sent. Deleting the file costs calls, never data. Changes "
        "made in Marketo by anyone else are not seen: use write_ledger_refresh now and then.",
    ),
    "write_ledger_refresh": setting_property(
        "boolean",
        "Write ledger refresh",
        "Ignore the fingerprints in write_ledger_path: send every record and store fresh fingerprints "
        "for what Marketo accepts.",
        default=False,
    ),
}


def config_jsonschema() -> dict[str, Any]:
    """Connection settings shared with the tap, followed by the target's own settings."""
    connection = copy.deepcopy(SETTINGS_JSON_SCHEMA)
    return {
        "type": "object",
        "properties": {**connection["properties"], **copy.deepcopy(TARGET_PROPERTIES)},
        "required": list(connection.get("required", [])),
    }


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
        """Typed settings; raises SettingsError naming the setting at fault."""
        errors = config_errors(config)
        if errors:
            raise SettingsError("; ".join(errors))
        mapping = {
            str(name): OBJECT_NAMES[str(value)]
            for name, value in (config.get("stream_objects") or {}).items()
        }
        batch_size = config.get("batch_size_rows")
        body = config.get("max_body_bytes")
        return cls(
            connection=MarketoSettings.from_config(config),
            action=str(config.get("action") or "createOrUpdate"),
            dedupe_by=str(config.get("dedupe_by") or "dedupeFields"),
            batch_size=int(batch_size) if batch_size is not None else MAX_BATCH,
            max_body_bytes=int(body) if body is not None else MAX_BODY_BYTES,
            stream_objects=mapping,
            results_path=config.get("results_path") or None,
            max_rejections=config.get("max_rejections", DEFAULT_MAX_REJECTIONS),
            dry_run=bool(config.get("dry_run", False)),
            write_ledger_path=config.get("write_ledger_path") or None,
            write_ledger_refresh=bool(config.get("write_ledger_refresh", False)),
        )

    def object_for_stream(self, stream_name: str) -> MarketoObject | None:
        if stream_name in self.stream_objects:
            return self.stream_objects[stream_name]
        return DEFAULT_STREAM_OBJECTS.get(stream_name)


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks JSON Schema cannot express clearly; each message names its setting."""
    errors: list[str] = []
    action = config.get("action") or "createOrUpdate"
    dedupe_by = config.get("dedupe_by") or "dedupeFields"
    if action not in ACTIONS:
        errors.append(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if dedupe_by not in DEDUPE_MODES:
        errors.append(f"dedupe_by must be one of {', '.join(DEDUPE_MODES)}, got {dedupe_by!r}")
    elif dedupe_by == "idField" and action != "updateOnly":
        errors.append(
            f"dedupe_by idField (match on marketoGUID) only works with action updateOnly, not {action}: "
            "Marketo cannot create a record from a marketoGUID"
        )
    batch_size = config.get("batch_size_rows")
    if batch_size is not None and not (isinstance(batch_size, int) and 1 <= batch_size <= MAX_BATCH):
        errors.append(f"batch_size_rows must be between 1 and {MAX_BATCH} (Marketo's limit per call)")
    body = config.get("max_body_bytes")
    if body is not None and not (isinstance(body, int) and MIN_BODY_BYTES <= body <= MAX_BODY_BYTES):
        errors.append(f"max_body_bytes must be between {MIN_BODY_BYTES} and {MAX_BODY_BYTES}")
    ledger = config.get("write_ledger_path")
    if ledger and ledger == config.get("results_path"):
        errors.append("write_ledger_path must be another file than results_path")
    for name, value in (config.get("stream_objects") or {}).items():
        if value not in OBJECT_NAMES:
            errors.append(f"stream_objects[{name!r}] must be one of {', '.join(OBJECT_NAMES)}, got {value!r}")
    try:
        MarketoSettings.from_config(config)
    except SettingsError as exc:
        errors.append(str(exc))
    return errors
