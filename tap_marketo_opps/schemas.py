"""Stream schemas and value coercion.

Record schemas come from Marketo's describe endpoints through `marketo_api.json_schema_for`
(the project's one dataType mapping). At sync time the catalog's schema is the source of
truth, so coercion is derived back from each property's JSON type and format: every dataType
that maps to the same JSON type is read the same way by `marketo_api.datatypes.from_api` (through
`reader`, its per-field fast path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from singer_sdk import typing as th

from marketo_api import FieldDescription, ObjectDescription, ValueTypeError
from marketo_api.datatypes import reader

logger = logging.getLogger("tap_marketo_opps")

REPLICATION_KEY = "updatedAt"


def replication_key_for(schema: Mapping[str, Any]) -> str | None:
    """`updatedAt` when the object has it as a datetime; else None (FULL_TABLE)."""
    prop = schema.get("properties", {}).get(REPLICATION_KEY)
    if prop and prop.get("format") == "date-time":
        return REPLICATION_KEY
    return None


def coercion_field(name: str, prop: Mapping[str, Any]) -> FieldDescription:
    """A FieldDescription whose dataType reads values as the property's JSON type."""
    types = prop.get("type", "string")
    types = [types] if isinstance(types, str) else list(types)
    fmt = prop.get("format")
    if "integer" in types:
        data_type = "integer"
    elif "number" in types:
        data_type = "float"  # float and currency are both read as exact Decimals
    elif "boolean" in types:
        data_type = "boolean"
    elif fmt == "date-time":
        data_type = "datetime"
    elif fmt == "date":
        data_type = "date"
    else:
        data_type = "string"
    length = prop.get("maxLength")
    return FieldDescription(
        name=name,
        display_name=name,
        data_type=data_type,
        length=int(length) if isinstance(length, int) else None,
        updateable=False,
    )


# Unreadable values logged one by one per stream and field; the rest are only counted, and
# the end-of-run summary (TapMarketoOpps.log_call_summary) gives the exact counts.
LOGGED_UNREADABLE_PER_FIELD = 10


class RecordCoercer:
    """Turns API records into typed records with exactly the requested fields.

    A value that cannot be read as its property's type (e.g. a catalog that says integer for
    a field Marketo now holds text in) is emitted as null and reported: the first
    `LOGGED_UNREADABLE_PER_FIELD` per field are logged at WARNING with the stream, record and
    field, and every one is counted in `unreadable`, keyed by (stream, field).
    """

    def __init__(
        self,
        stream_name: str,
        schema: Mapping[str, Any],
        unreadable: dict[tuple[str, str], int] | None = None,
        log: logging.Logger = logger,
    ) -> None:
        self._stream = stream_name
        self._log = log
        self._fields = {
            name: coercion_field(name, prop) for name, prop in schema.get("properties", {}).items()
        }
        self._readers = {name: reader(spec) for name, spec in self._fields.items()}
        self._plans: dict[tuple[str, ...], list[tuple[str, Callable[[Any], Any] | None]]] = {}
        self.unreadable = unreadable if unreadable is not None else {}

    def coerce(self, raw: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        """The record with every field in `fields`; a field the API did not return is null."""
        plan = self._plans.get(fields)
        if plan is None:
            plan = self._plans[fields] = [(name, self._readers.get(name)) for name in fields]
        record: dict[str, Any] = {}
        get = raw.get
        for name, read in plan:
            value = get(name)
            if value is None or read is None:
                record[name] = value
                continue
            try:
                record[name] = read(value)
            except ValueTypeError as exc:
                self._report(raw, name, exc)
                record[name] = None
        return record

    def _report(self, raw: Mapping[str, Any], name: str, exc: ValueTypeError) -> None:
        key = (self._stream, name)
        count = self.unreadable.get(key, 0) + 1
        self.unreadable[key] = count
        if count > LOGGED_UNREADABLE_PER_FIELD:
            return
        self._log.warning(
            "%s record %s: %s; emitted as null%s",
            self._stream,
            _record_label(raw),
            exc,
            f" ({count} logged for {self._stream}.{name}; further ones are only counted, in the "
            "summary at the end of the run)"
            if count == LOGGED_UNREADABLE_PER_FIELD
            else "",
        )


def _record_label(raw: Mapping[str, Any]) -> str:
    """How a log line names a Marketo record: its marketoGUID, else its externalOpportunityId."""
    for key in ("marketoGUID", "externalOpportunityId"):
        if raw.get(key) is not None:
            return f"{key} {raw[key]}"
    return "(no marketoGUID or externalOpportunityId)"


def unreadable_summary(counts: Mapping[tuple[str, str], int]) -> str:
    """`opportunities.legacyFormula 40, ...`: exact counts of unreadable values by stream and field."""
    return ", ".join(f"{stream}.{name} {count:,}" for (stream, name), count in sorted(counts.items()))


# Where a field-metadata property comes from: describe (both objects), the opportunity schema
# API's entry (roles have no schema API), or which of the two lists the field (opportunities).
_DESCRIBE, _SCHEMA_API, _LISTED_BY = "describe", "schema API", "listed by"
_FIELD_PROPERTIES: tuple[tuple[str, type[th.JSONTypeHelper], str, str], ...] = (
    ("displayName", th.StringType, "Display name.", _DESCRIBE),
    ("dataType", th.StringType, "Marketo dataType (string, integer, currency, datetime, ...).", _DESCRIBE),
    ("length", th.IntegerType, "Maximum length, for string-like fields.", _DESCRIBE),
    ("updateable", th.BooleanType, "Describe: the field can be written through the API.", _DESCRIBE),
    ("isIdField", th.BooleanType, "Describe: the field is the object's idField (marketoGUID).", _DESCRIBE),
    ("isDedupeField", th.BooleanType, "Describe: the field is (part of) the dedupe key.", _DESCRIBE),
    (
        "isSearchable",
        th.BooleanType,
        "Describe: the field can be used alone as a query filterType.",
        _DESCRIBE,
    ),
    ("description", th.StringType, "Schema API: description.", _SCHEMA_API),
    ("isHidden", th.BooleanType, "Schema API: hidden in the Marketo UI.", _SCHEMA_API),
    ("isHtmlEncodingInEmail", th.BooleanType, "Schema API: HTML-encoded in emails.", _SCHEMA_API),
    ("isSensitive", th.BooleanType, "Schema API: sensitive field.", _SCHEMA_API),
    ("isCustom", th.BooleanType, "Schema API: custom field.", _SCHEMA_API),
    ("isApiCreated", th.BooleanType, "Schema API: created through the API.", _SCHEMA_API),
    ("inDescribe", th.BooleanType, "The describe endpoint lists the field.", _LISTED_BY),
    ("inSchemaApi", th.BooleanType, "The schema/fields endpoint lists the field.", _LISTED_BY),
)


def _fields_schema(*sources: str) -> dict[str, Any]:
    return th.PropertiesList(
        th.Property(
            "name", th.StringType(nullable=False), required=True, description="API name of the field."
        ),
        *(
            th.Property(name, kind, description=description)
            for name, kind, description, source in _FIELD_PROPERTIES
            if source in sources
        ),
    ).to_dict()


OPPORTUNITY_FIELDS_SCHEMA: dict[str, Any] = _fields_schema(_DESCRIBE, _SCHEMA_API, _LISTED_BY)
ROLE_FIELDS_SCHEMA: dict[str, Any] = _fields_schema(_DESCRIBE)

KEY_BATCHES_SCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property("source", th.StringType(nullable=False), required=True),
    th.Property("batch", th.IntegerType(nullable=False), required=True),
    th.Property("keys", th.IntegerType),
).to_dict()

_SCHEMA_API_KEYS = tuple(name for name, _, _, source in _FIELD_PROPERTIES if source == _SCHEMA_API)


def field_record(
    description: ObjectDescription,
    name: str,
    schema_api: Mapping[str, Any] | None,
    *,
    with_schema_api: bool,
) -> dict[str, Any]:
    """One field's metadata: the schema/fields entry (if any) merged with the describe flags."""
    described: FieldDescription | None
    try:
        described = description.field(name)
    except KeyError:
        described = None
    record: dict[str, Any] = {
        "name": name,
        "displayName": (schema_api or {}).get("displayName")
        or (described.display_name if described else None),
        "dataType": (schema_api or {}).get("dataType") or (described.data_type if described else None),
        "length": _int_or_none((schema_api or {}).get("length"))
        if schema_api and schema_api.get("length") is not None
        else (described.length if described else None),
        "updateable": described.updateable if described else None,
        "isIdField": name == description.id_field,
        "isDedupeField": name in description.dedupe_fields,
        "isSearchable": name in description.single_searchable_fields,
    }
    if with_schema_api:
        for key in _SCHEMA_API_KEYS:
            record[key] = (schema_api or {}).get(key)
        record["inDescribe"] = described is not None
        record["inSchemaApi"] = schema_api is not None
    return record


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
