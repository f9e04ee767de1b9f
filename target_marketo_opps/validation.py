"""Record validation against the stream's schema, compiled once per stream with fastjsonschema.

singer-sdk validates every record with `jsonschema` (Draft 2020-12), which is most of a target's
CPU time, and raises `InvalidRecord`, which aborts the whole run. Here the stream schema is
compiled to Python code once, and a failure becomes a message naming the field, so the target
rejects that one record and carries on with the others.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import fastjsonschema
import jsonschema
from singer_sdk.exceptions import InvalidJSONSchema

logger = logging.getLogger("target_marketo_opps.validation")

_ROOT = "data"


class RecordValidator:
    """`error(record)` is None for a valid record, else one message naming the offending field.

    An invalid schema raises singer-sdk's `InvalidJSONSchema` (the tap is broken; as in the SDK,
    the run stops at its SCHEMA message). Formats (`date-time` ...) are not checked, as in
    singer-sdk; values are checked against Marketo's own types when the payload is built. A
    schema fastjsonschema cannot compile (it supports drafts 4, 6 and 7) falls back to the
    slower `jsonschema` validator.
    """

    def __init__(self, schema: dict[str, Any], *, stream_name: str = "") -> None:
        schema = copy.deepcopy(schema)
        properties = schema.get("properties")
        if isinstance(properties, dict):
            # Kept on records (it marks deletes) even when the tap did not declare it.
            properties.setdefault("_sdc_deleted_at", {})
        self.compiled = True
        self._check: Callable[[dict[str, Any]], str | None]
        try:
            validate = fastjsonschema.compile(schema, use_formats=False, use_default=False)
        except (fastjsonschema.JsonSchemaDefinitionException, TypeError, ValueError) as exc:
            self.compiled = False
            self._check = _jsonschema_checker(schema, stream_name)
            logger.warning(
                "Stream %r: fastjsonschema cannot compile the stream schema (%s); validating records "
                "with the slower jsonschema library",
                stream_name,
                exc,
            )
        else:
            self._check = _fast_checker(validate)

    def error(self, record: dict[str, Any]) -> str | None:
        return self._check(record)


def _fast_checker(validate: Callable[[Any], Any]) -> Callable[[dict[str, Any]], str | None]:
    def first_error(record: dict[str, Any]) -> fastjsonschema.JsonSchemaValueException | None:
        try:
            validate(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            return exc
        return None

    def check(record: dict[str, Any]) -> str | None:
        error = first_error(record)
        if error is None:
            return None
        # JSON `40.0` arrives as Decimal('40.0'), which JSON Schema counts as an integer but
        # fastjsonschema does not: check again with integral decimals as ints (only on failure,
        # so valid records pay nothing).
        normalized = _integral_decimals_as_ints(record)
        if normalized is not record:
            error = first_error(normalized)
            if error is None:
                return None
        return _describe(list(error.path or [_ROOT]), str(error.message))

    return check


def _integral_decimals_as_ints(value: Any) -> Any:
    """A copy with every finite whole `Decimal` as an `int` (`value` itself when there is none)."""
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return value
    if isinstance(value, dict):
        items = {k: _integral_decimals_as_ints(v) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    if isinstance(value, list):
        elements = [_integral_decimals_as_ints(v) for v in value]
        return value if all(a is b for a, b in zip(elements, value, strict=True)) else elements
    return value


def _jsonschema_checker(schema: dict[str, Any], stream_name: str) -> Callable[[dict[str, Any]], str | None]:
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidJSONSchema(f"Stream {stream_name!r} has an invalid schema: {exc.message}") from exc
    validator = validator_class(schema, format_checker=None)

    def check(record: dict[str, Any]) -> str | None:
        try:
            error = jsonschema.exceptions.best_match(validator.iter_errors(record))
        except jsonschema.ValidationError:
            raise
        except Exception as exc:  # e.g. an unresolvable $ref: the schema, not the record, is wrong
            raise InvalidJSONSchema(f"Stream {stream_name!r}: its schema cannot be used: {exc}") from exc
        if error is None:
            return None
        path = [_ROOT, *(str(p) for p in error.absolute_path)]
        return _describe(path, f"{'.'.join(path)} {error.message}")

    return check


def _describe(path: list[Any], message: str) -> str:
    """'data.amount must be number' -> "field 'amount' must be number"."""
    name = str(path[0]) if path else _ROOT
    parts = [str(p) for p in path[1:]]
    location = ""
    for part in parts:
        location += f"[{part}]" if part.isdigit() else (f".{part}" if location else part)
    prefix = ".".join([name, *[p for p in parts if not p.isdigit()]])
    text = message
    # fastjsonschema writes "data.arr[1] must be string"; drop whatever names the location.
    head = message.split(" ", 1)
    if len(head) == 2 and (head[0] == prefix or head[0].startswith(name)):
        text = head[1]
    if not location:
        return f"record {text}"
    return f"field '{location}' {text}"
