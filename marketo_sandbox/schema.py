"""Object schemas (describe / field metadata) and value validation for the sandbox."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .config import CustomField

DESCRIBE_CREATED_AT = "2015-02-03T22:36:23Z"
DESCRIBE_UPDATED_AT = "2015-02-03T22:36:24Z"

_INT_RE = re.compile(r"[+-]?\d+")
_NUM_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
_CENT = Decimal("0.01")

STRING_TYPES = frozenset({"string", "text", "email", "phone", "url", "reference"})
INTEGER_TYPES = frozenset({"integer", "score", "percent"})


@dataclass(frozen=True)
class FieldDef:
    """One field of an object, as described by Marketo."""

    name: str
    display_name: str
    data_type: str
    length: int | None = None
    updateable: bool = True
    searchable: bool = False
    custom: bool = False
    #: displayName in the schema/fields API when it differs from describe (Marketo's doc shows
    #: "SFDC Oppty Id" there but "External Opportunity Id" in describe).
    schema_display_name: str | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "displayName": self.display_name,
            "dataType": self.data_type,
        }
        if self.length is not None:
            out["length"] = self.length
        out["updateable"] = self.updateable
        return out

    def schema_record(self, complete: bool = False) -> dict[str, Any]:
        """As the docs show it (``description: null``); ``complete``: a string, as the spec says."""
        out: dict[str, Any] = {
            "displayName": self.schema_display_name or self.display_name,
            "name": self.name,
            "description": "" if complete else None,
            "dataType": self.data_type,
        }
        if self.length is not None:
            out["length"] = self.length
        out.update(
            {
                "isHidden": False,
                "isHtmlEncodingInEmail": True,
                "isSensitive": False,
                "isCustom": self.custom,
                "isApiCreated": self.custom,
            }
        )
        return out


class InvalidValue(Exception):
    """A value that does not fit its field (record-level 1001)."""


def _show(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "..."


def invalid_value_message(value: Any, fdef: FieldDef) -> str:
    return f"Invalid value '{_show(value)}' for field '{fdef.name}'. Required of type '{fdef.data_type}'"


def _as_int(value: Any) -> int | None:
    """An int, or an integer string; booleans and ``5.0`` are no integers to Marketo."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    return None


def coerce(fdef: FieldDef, value: Any) -> Any:
    """Validate an input value and return its stored (API) representation.

    ``None`` and ``""`` mean null and return ``None``. Raises :class:`InvalidValue` otherwise.
    """
    if value is None or (isinstance(value, str) and value == ""):
        return None
    dt = fdef.data_type
    if dt in STRING_TYPES:
        if not isinstance(value, str):
            raise InvalidValue
        if fdef.length is not None and len(value) > fdef.length:
            raise InvalidValue
        if dt == "email" and not _EMAIL_RE.fullmatch(value):
            raise InvalidValue
        return value
    if dt in INTEGER_TYPES:
        integer = _as_int(value)
        if integer is None:
            raise InvalidValue
        return integer
    if dt in ("float", "currency"):
        if isinstance(value, bool):
            raise InvalidValue
        if isinstance(value, int | float):
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        elif isinstance(value, str) and _NUM_RE.fullmatch(value.strip()):
            number = Decimal(value.strip())
        else:
            raise InvalidValue
        if not number.is_finite():
            raise InvalidValue
        if dt == "float":
            result = float(number)
            if math.isinf(result):
                raise InvalidValue
            return result
        try:
            return str(number.quantize(_CENT, rounding=ROUND_HALF_UP))
        except InvalidOperation as exc:
            raise InvalidValue from exc
    if dt == "boolean":
        if isinstance(value, bool):
            return value
        raise InvalidValue
    if dt == "date":
        if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
            raise InvalidValue
        try:
            date.fromisoformat(value)
        except ValueError as exc:
            raise InvalidValue from exc
        return value
    if dt == "datetime":
        return normalize_datetime(value)
    # Unknown dataType (e.g. "formula"): any JSON scalar, stored as given.
    if isinstance(value, str | int | float | bool):
        return value
    raise InvalidValue


def normalize_datetime(value: Any) -> str:
    """ISO 8601 with ``Z`` or an offset -> ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    if not isinstance(value, str) or "T" not in value.upper():
        raise InvalidValue
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidValue from exc
    if parsed.tzinfo is None:
        raise InvalidValue
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def filter_key(fdef: FieldDef, raw: Any) -> Any:
    """Turn a filter value (string from a URL or a JSON value) into an index key, or None."""
    if fdef.data_type in INTEGER_TYPES:
        return _as_int(raw)
    if isinstance(raw, str):
        return raw
    if raw is None or isinstance(raw, bool | dict | list):
        return None
    return str(raw)


def _humanize(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return words[:1].upper() + words[1:]


@dataclass
class ObjectSchema:
    """Metadata for one object type (opportunity or opportunityRole)."""

    api_name: str
    display_name: str
    fields: list[FieldDef]
    dedupe_fields: list[str]
    searchable_fields: list[list[str]]
    default_fields: list[str]
    #: order of the schema/fields browse API (None: no schema API for this object)
    schema_order: list[str] | None
    id_field: str = "marketoGUID"

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.fields}
        self.by_lower = {f.name.lower(): f for f in self.fields}
        self.single_searchable = [s[0] for s in self.searchable_fields if len(s) == 1]

    def resolve(self, name: str) -> FieldDef | None:
        return self.by_lower.get(name.strip().lower())

    def describe(self, complete: bool = False) -> dict[str, Any]:
        """As the docs show it; ``complete`` adds the members the spec requires and the docs omit."""
        extra: dict[str, Any] = {}
        if complete:
            extra = {
                "apiName": self.api_name,
                "description": "",
                "pluralName": self.display_name + "s",
                "relationships": [],
                "state": "approved",
                "status": "approved",  # the spec requires "status" but defines "state"
                "version": "approved",
            }
        return {
            **extra,
            "name": self.api_name,
            "displayName": self.display_name,
            "createdAt": DESCRIBE_CREATED_AT,
            "updatedAt": DESCRIBE_UPDATED_AT,
            "idField": self.id_field,
            "dedupeFields": list(self.dedupe_fields),
            "searchableFields": [list(s) for s in self.searchable_fields],
            "fields": [f.describe() for f in self.fields],
        }

    def schema_records(self, complete: bool = False) -> list[dict[str, Any]]:
        return [self.by_name[n].schema_record(complete) for n in (self.schema_order or [])]


def _f(  # noqa: PLR0917
    name: str,
    display: str,
    data_type: str,
    length: int | None = None,
    updateable: bool = True,
    searchable: bool = False,
    schema_display: str | None = None,
) -> FieldDef:
    return FieldDef(name, display, data_type, length, updateable, searchable, False, schema_display)


def opportunity_schema(
    custom_fields: list[CustomField], *, sales_person_reference: bool = False
) -> ObjectSchema:
    """The opportunity object; ``sales_person_reference`` describes externalSalesPersonId as a
    ``reference`` (to a sales person that must exist) instead of a plain string."""
    system = [
        _f("marketoGUID", "Marketo GUID", "string", 36, updateable=False, searchable=True),
        _f("createdAt", "Created At", "datetime", updateable=False),
        _f("updatedAt", "Updated At", "datetime", updateable=False),
    ]
    standard = [
        _f(
            "externalOpportunityId",
            "External Opportunity Id",
            "string",
            50,
            updateable=False,
            searchable=True,
            schema_display="SFDC Oppty Id",
        ),
        _f("name", "Name", "string", 255),
        _f("description", "Description", "string", 2000),
        _f("type", "Type", "string", 255),
        _f("stage", "Stage", "string", 255),
        _f("amount", "Amount", "currency"),
        _f("expectedRevenue", "Expected Revenue", "currency"),
        _f("closeDate", "Close Date", "date"),
        _f("isClosed", "Is Closed", "boolean"),
        _f("isWon", "Is Won", "boolean"),
        _f("probability", "Probability", "integer"),
        _f("quantity", "Quantity", "float"),
        _f("fiscalQuarter", "Fiscal Quarter", "integer"),
        _f("fiscalYear", "Fiscal Year", "integer"),
        _f("forecastCategory", "Forecast Category", "string", 255),
        _f("forecastCategoryName", "Forecast Category Name", "string", 255),
        _f("leadSource", "Lead Source", "string", 255),
        _f("nextStep", "Next Step", "string", 255),
        _f("source", "Source", "string", 255),
        _f("lastActivityDate", "Last Activity Date", "date"),
        _f("externalCompanyId", "External Company Id", "string", 100, searchable=True),
        _f(
            "externalSalesPersonId",
            "External Sales Person Id",
            "reference" if sales_person_reference else "string",
            100,
            searchable=True,
        ),
        _f("externalCreatedDate", "External Created Date", "datetime"),
    ]
    taken = {f.name.lower() for f in system + standard}
    custom: list[FieldDef] = []
    for c in custom_fields:
        if c.name.lower() in taken:
            raise ValueError(f"custom field {c.name!r} clashes with a standard field")
        taken.add(c.name.lower())
        custom.append(
            FieldDef(
                name=c.name,
                display_name=c.display_name or _humanize(c.name),
                data_type=c.data_type,
                length=c.length,
                updateable=c.updateable,
                searchable=c.searchable,
                custom=True,
            )
        )
    searchable = [
        ["externalOpportunityId"],
        ["marketoGUID"],
        ["externalCompanyId"],
        ["externalSalesPersonId"],
    ]
    searchable += [[c.name] for c in custom if c.searchable]
    return ObjectSchema(
        api_name="opportunity",
        display_name="Opportunity",
        fields=[system[0], system[1], system[2], standard[0], *standard[1:], *custom],
        dedupe_fields=["externalOpportunityId"],
        searchable_fields=searchable,
        default_fields=["marketoGUID", "externalOpportunityId", "createdAt", "updatedAt"],
        schema_order=[f.name for f in standard] + [f.name for f in custom] + [f.name for f in system],
    )


def role_schema() -> ObjectSchema:
    fields = [
        _f("marketoGUID", "Marketo GUID", "string", 36, updateable=False),
        _f("externalOpportunityId", "External Opportunity Id", "string", 50, updateable=False),
        _f("leadId", "Lead Id", "integer", updateable=False),
        _f("role", "Role", "string", 50, updateable=False),
        _f("isPrimary", "Is Primary", "boolean"),
        _f("externalCreatedDate", "External Created Date", "datetime"),
        _f("createdAt", "Created At", "datetime", updateable=False),
        _f("updatedAt", "Updated At", "datetime", updateable=False),
    ]
    return ObjectSchema(
        api_name="opportunityRole",
        display_name="Opportunity Role",
        fields=fields,
        dedupe_fields=["externalOpportunityId", "leadId", "role"],
        searchable_fields=[
            ["externalOpportunityId", "leadId", "role"],
            ["marketoGUID"],
            ["leadId"],
            ["externalOpportunityId"],
        ],
        default_fields=["marketoGUID", "externalOpportunityId", "leadId", "role", "createdAt", "updatedAt"],
        schema_order=None,
    )
