"""Marketo dataTypes ↔ JSON Schema and Python values; one mapping for the tap and the target."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from .describe import FieldDescription, ObjectDescription

logger = logging.getLogger("marketo_api.datatypes")

STRING_TYPES = frozenset(
    {"string", "text", "textarea", "email", "phone", "url", "reference", "link", "lead_function", "picklist"}
)
INTEGER_TYPES = frozenset({"integer", "score", "percent"})
NUMBER_TYPES = frozenset({"float", "currency"})
_LENGTH_LIMITED = frozenset({"string", "email", "phone", "url", "reference"})
KNOWN_TYPES = STRING_TYPES | INTEGER_TYPES | NUMBER_TYPES | {"boolean", "date", "datetime"}


def is_known(data_type: str) -> bool:
    return data_type in KNOWN_TYPES


def json_schema_for_field(field: FieldDescription) -> dict[str, Any]:
    """Nullable JSON Schema for one field; unknown dataTypes become strings."""
    data_type = field.data_type
    if data_type in INTEGER_TYPES:
        return {"type": ["integer", "null"]}
    if data_type in NUMBER_TYPES:
        return {"type": ["number", "null"]}
    if data_type == "boolean":
        return {"type": ["boolean", "null"]}
    if data_type == "date":
        return {"type": ["string", "null"], "format": "date"}
    if data_type == "datetime":
        return {"type": ["string", "null"], "format": "date-time"}
    schema: dict[str, Any] = {"type": ["string", "null"]}
    limit = max_length(field)
    if limit is not None:
        schema["maxLength"] = limit
    return schema


def max_length(field: FieldDescription) -> int | None:
    """The longest string Marketo takes for this field, where its dataType enforces `length`."""
    return field.length if field.data_type in _LENGTH_LIMITED else None


def json_schema_for(description: ObjectDescription) -> dict[str, Any]:
    """JSON Schema of a record of the described object: every field, keyed by API name."""
    for field in description.fields:
        if not is_known(field.data_type):
            logger.warning(
                "%s field %r has dataType %r, which this connector does not know; it is read as a string",
                description.name,
                field.name,
                field.data_type,
            )
    return {
        "type": "object",
        "properties": {field.name: json_schema_for_field(field) for field in description.fields},
    }


class ValueTypeError(ValueError):
    """A value that cannot be read or written as its field's dataType."""


def from_api(field: FieldDescription, value: Any) -> Any:
    """Python value of a field as Marketo returns it (currency as an exact Decimal)."""
    if value is None:
        return None
    data_type = field.data_type
    try:
        if data_type in INTEGER_TYPES:
            return _whole_number(value)
        if data_type in NUMBER_TYPES:
            # str() first: a float that reached us keeps its shortest repr, not binary noise.
            number = value if isinstance(value, Decimal) else Decimal(str(value))
            if not number.is_finite():
                raise ValueTypeError(f"{value!r} is not a finite number")
            return number
        if data_type == "boolean":
            return _to_bool(value)
        if data_type == "date":
            return _to_date(value).isoformat()
        if data_type == "datetime":
            # One UTC form, so bookmarks compare correctly as strings.
            return parse_datetime(value).astimezone(dt.timezone.utc).isoformat()
    except (InvalidOperation, ValueError, OverflowError) as exc:
        raise ValueTypeError(
            f"field {field.name!r} ({data_type}): cannot read {value!r}: {_reason(exc)}"
        ) from None
    return value if isinstance(value, str) else str(value)


def reader(field: FieldDescription) -> Callable[[Any], Any]:
    """`from_api` for one field, with a fast path for the form Marketo sends its type in.

    The tap reads every value of every record; dispatching on the dataType per value was its
    largest cost. Each fast path returns exactly what `from_api` returns for the values it
    takes (tests compare both on every form); anything else goes to `from_api` itself.
    """
    data_type = field.data_type

    def slow(value: Any) -> Any:
        return from_api(field, value)

    if data_type in INTEGER_TYPES:

        def read_integer(value: Any) -> Any:
            if type(value) is int and -_INT_LIMIT < value < _INT_LIMIT:
                return value
            return slow(value)

        return read_integer
    if data_type in NUMBER_TYPES:

        def read_number(value: Any) -> Any:
            if type(value) is Decimal and value.is_finite():
                return value
            return slow(value)

        return read_number
    if data_type == "boolean":

        def read_boolean(value: Any) -> Any:
            return value if type(value) is bool else slow(value)

        return read_boolean
    if data_type == "date":

        def read_date(value: Any) -> Any:
            if type(value) is str and len(value) == 10 and "T" not in value:
                try:
                    return _date_from_iso(value).isoformat()
                except ValueError:
                    pass
            return slow(value)

        return read_date
    if data_type == "datetime":

        def read_datetime(value: Any) -> Any:
            # Marketo's own form, 2024-01-31T10:00:00Z: the wall time is already UTC.
            if type(value) is str and len(value) == 20 and value[19] == "Z":
                try:
                    parsed = _datetime_from_iso(value[:19])
                except ValueError:
                    return slow(value)
                if parsed.tzinfo is None and not parsed.microsecond:
                    return parsed.isoformat() + "+00:00"
            return slow(value)

        return read_datetime

    def read_string(value: Any) -> Any:
        return value if type(value) is str else slow(value)

    return read_string


_date_from_iso = dt.date.fromisoformat
_datetime_from_iso = dt.datetime.fromisoformat


def to_api(field: FieldDescription, value: Any) -> Any:
    """JSON-ready value for a write: exact decimals as strings, ISO dates, offsets on datetimes."""
    if value is None:
        return None
    data_type = field.data_type
    try:
        if data_type in INTEGER_TYPES:
            if isinstance(value, bool):
                raise ValueTypeError("a boolean is not a whole number")
            return _whole_number(value)
        if data_type in NUMBER_TYPES:
            if isinstance(value, bool):
                raise ValueTypeError("a boolean is not a number")
            number = value if isinstance(value, Decimal) else Decimal(str(value))
            if not number.is_finite():
                raise ValueTypeError(f"{value!r} is not a finite number")
            if abs(number) > _DOUBLE_MAX:
                raise ValueTypeError(f"{value!r} is beyond the range of Marketo's numbers (doubles)")
            return format(number, "f")
        if data_type == "boolean":
            return _to_bool(value)
        if data_type == "date":
            return _to_date(value).isoformat()
        if data_type == "datetime":
            return parse_datetime(value).isoformat()
    except (InvalidOperation, ValueError, OverflowError) as exc:
        raise ValueTypeError(f"cannot write {value!r} as {data_type}: {_reason(exc)}") from None
    if isinstance(value, (dict, list)):
        raise ValueTypeError(f"cannot write a {type(value).__name__} as {data_type}")
    return value if isinstance(value, str) else str(value)


def _reason(exc: Exception) -> str:
    # decimal's own message is a list of signal classes ("[<class 'decimal.ConversionSyntax'>]").
    return "not a number" if isinstance(exc, InvalidOperation) else str(exc)


# Marketo stores float and currency fields as doubles; a larger magnitude cannot be stored as sent.
_DOUBLE_MAX = Decimal("1.7976931348623157e308")

# Marketo integers are 32-bit (lead ids, scores); a larger number is a data error, not an id.
_INT_LIMIT = 2**31


def _whole_number(value: Any) -> int:
    number = Decimal(str(value))
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueTypeError(f"{value!r} is not a whole number")
    if abs(number) >= _INT_LIMIT:
        raise ValueTypeError(f"{value!r} is outside Marketo's integer range")
    return int(number)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueTypeError(f"{value!r} is not a boolean")


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value)
    # A datetime keeps its date as written, but only when all of it is a valid datetime:
    # "2024-01-01Tjunk" is an error, not 2024-01-01.
    return parse_datetime(text).date() if "T" in text else dt.date.fromisoformat(text)


def parse_datetime(value: Any) -> dt.datetime:
    """Aware datetime; a naive one is taken as UTC, which is how Marketo reports times."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime.combine(value, dt.time())
    else:
        text = str(value).strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        # Marketo's asset APIs write "...Z+0000"; a bare +0000 needs a colon before Python 3.11.
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and text[-3] != ":":
            text = f"{text[:-2]}:{text[-2:]}"
        parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed
