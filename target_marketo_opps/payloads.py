"""From a Singer record to a Marketo payload: describe-driven hygiene, key checks, serialization.

Everything here runs in the main thread, once per record, before anything is sent. A record
either becomes an `Item` ready for a sync or delete call, or an `Item` carrying the reason it
is rejected.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from marketo_api import (
    FieldDescription,
    MarketoObject,
    ObjectDescription,
    Reason,
    ValueTypeError,
    encode_json,
    max_length,
    to_api,
)
from marketo_api.datatypes import INTEGER_TYPES, STRING_TYPES, parse_datetime

from .records import (
    INVALID_RECORD,
    INVALID_VALUE,
    MISSING_KEY,
    NAME_REQUIRED,
    TOO_LARGE,
    TOO_LONG,
    UTC_OFFSET,
    Item,
    conflict_keys,
    delete_envelope_bytes,
    has_lone_surrogate,
    plain_value,
    sync_envelope_bytes,
)
from .terms import DELETE, SYNC, Action, KeyMode

# How a field's values are converted without the general path (`_convert`) when they have the
# usual type; any other value takes the general path, which names the problem.
_STRING, _INTEGER, _BOOLEAN, _DATE, _DATETIME, _OTHER = range(6)
# A writable field: its description, its fast-path kind, and its maximum length.
_FieldPlan = tuple[FieldDescription, int, int | None]
# Marketo integers are 32-bit (`to_api` refuses larger ones).
_INT_LIMIT = 2**31


class PayloadBuilder:
    """Builds payloads for one Marketo object from its describe (fetched once per run).

    * fields unknown to describe, or not updateable, are dropped with one warning per field;
      key fields stay (dedupe fields, and the idField with `dedupe_by: idField`);
    * values go through `marketo_api.datatypes.to_api` (exact decimals, ISO dates, datetimes
      with an offset); a value that cannot be converted rejects the record, naming the field;
    * strings longer than the field's `length` reject the record;
    * records missing the key fields the action needs, or (opportunities) with a null name, or
      no name at all for createOnly, are rejected.
    """

    def __init__(
        self,
        obj: MarketoObject,
        description: ObjectDescription,
        *,
        action: str,
        dedupe_by: str,
        max_body_bytes: int,
        logger: logging.Logger,
    ) -> None:
        self.obj = obj
        self.description = description
        self.action = Action(action)
        self.dedupe_by = KeyMode(dedupe_by)
        self.max_body_bytes = max_body_bytes
        self.logger = logger
        self.fields: dict[str, FieldDescription] = {f.name: f for f in description.fields}
        self.dedupe_fields = tuple(description.dedupe_fields)
        self.id_field = description.id_field
        self.sync_keys = (self.id_field,) if self.dedupe_by == KeyMode.ID_FIELD else self.dedupe_fields
        self._sync_overhead = sync_envelope_bytes(self.action, self.dedupe_by)
        self._delete_overhead = {by: delete_envelope_bytes(by) for by in KeyMode}
        self._has_name = obj is MarketoObject.OPPORTUNITY and "name" in self.fields
        self._warned: set[tuple[str, str]] = set()
        self._plans: dict[str, _FieldPlan | None] = {}

    # ---- public -----------------------------------------------------------------------

    def build(
        self,
        seq: int,
        stream: str,
        record: Mapping[str, Any],
        *,
        deleted: bool,
        schema_error: str | None = None,
        invalid_value: str | None = None,
    ) -> Item:
        """`invalid_value` (e.g. an unreadable `_sdc_deleted_at`) rejects the record with that reason."""
        key = self._key(record)
        if deleted:
            item = Item(seq, stream, self.obj, DELETE, Action.DELETE, KeyMode.DEDUPE_FIELDS, key)
        else:
            item = Item(seq, stream, self.obj, SYNC, self.action, self.dedupe_by, key)
        if schema_error is not None:
            return self._reject(item, INVALID_RECORD, schema_error)
        if invalid_value is not None:
            return self._reject(item, INVALID_VALUE, invalid_value)
        if deleted:
            return self._build_delete(item, record)
        return self._build_sync(item, record)

    def body_overhead(self, item: Item) -> int:
        if item.op == SYNC:
            return self._sync_overhead
        return self._delete_overhead[item.by]

    # ---- sync ---------------------------------------------------------------------------

    def _build_sync(self, item: Item, record: Mapping[str, Any]) -> Item:
        payload: dict[str, Any] = {}
        plans = self._plans
        for name, value in record.items():
            plan = plans.get(name, _UNPLANNED)
            if plan is _UNPLANNED:
                plan = plans[name] = self._plan(name)
            if plan is None:
                continue
            if value is None:
                payload[name] = None
                continue
            fdesc, kind, limit = plan
            kind_of_value = type(value)
            # The usual value of each dataType, converted as `_convert` would; others go there.
            if kind_of_value is str and kind == _STRING:
                if not value.isascii() and has_lone_surrogate(value):
                    return self._reject(item, INVALID_VALUE, _surrogate_message(name))
                converted: Any = value  # `to_api` returns strings of string types unchanged
            elif (kind_of_value is int and kind == _INTEGER and -_INT_LIMIT < value < _INT_LIMIT) or (
                kind_of_value is bool and kind == _BOOLEAN
            ):
                converted = value  # `to_api` returns such whole numbers and booleans unchanged
            else:
                converted = _fast_time(kind, value) if kind_of_value is str else None
                if converted is None:
                    converted = self._convert(item, fdesc, value)
                    if item.rejection is not None:
                        return item
            if limit is not None and isinstance(converted, str) and len(converted) > limit:
                return self._reject(
                    item,
                    TOO_LONG,
                    f"field '{name}' is {len(converted)} characters long; Marketo allows {limit}",
                )
            payload[name] = converted
        missing = [name for name in self.sync_keys if _blank(payload.get(name))]
        if missing:
            return self._reject(item, MISSING_KEY, self._missing_message(missing, record))
        if self._has_name:
            if "name" in payload and _blank(payload["name"]):
                return self._reject(
                    item,
                    NAME_REQUIRED,
                    f"field 'name' is {_absence(record, 'name')}; Marketo requires a name",
                )
            if "name" not in payload and self.action == Action.CREATE_ONLY:
                return self._reject(
                    item, NAME_REQUIRED, "field 'name' is missing; Marketo requires a name to create"
                )
        return self._finish(item, payload)

    # ---- delete -------------------------------------------------------------------------

    def _build_delete(self, item: Item, record: Mapping[str, Any]) -> Item:
        if all(not _blank(record.get(name)) for name in self.dedupe_fields):
            names: tuple[str, ...] = self.dedupe_fields
            item.by = KeyMode.DEDUPE_FIELDS
        elif not _blank(record.get(self.id_field)):
            names = (self.id_field,)
            item.by = KeyMode.ID_FIELD
        else:
            return self._reject(
                item,
                MISSING_KEY,
                f"a delete needs {' + '.join(self.dedupe_fields)} or {self.id_field}; "
                + self._missing_message(
                    [n for n in self.dedupe_fields if _blank(record.get(n))], record, plain=True
                ),
            )
        payload: dict[str, Any] = {}
        for name in names:
            payload[name] = self._convert(item, self.fields[name], record[name])
            if item.rejection is not None:
                return item
        return self._finish(item, payload)

    # ---- helpers ------------------------------------------------------------------------

    def _finish(self, item: Item, payload: dict[str, Any]) -> Item:
        item.payload = payload
        item.size = len(encode_json(payload))  # the bytes the client will send for it
        item.conflict_keys = conflict_keys(self.obj, self.description, payload)
        limit = self.max_body_bytes - self.body_overhead(item)
        if item.size > limit:
            return self._reject(
                item,
                TOO_LARGE,
                f"the record alone serializes to {item.size} bytes; one request may carry at most "
                f"{self.max_body_bytes} bytes",
            )
        return item

    def _plan(self, name: str) -> _FieldPlan | None:
        """How a record field is written (None: dropped); decided once per field and run."""
        if name.startswith("_sdc_"):
            return None
        fdesc = self.fields.get(name)
        if fdesc is None:
            self._warn_once(
                name,
                "unknown",
                f"Field {name!r} is not a field of Marketo's {self.obj.label} (describe); "
                "it is dropped from every record",
            )
            return None
        if not fdesc.updateable and name not in self.sync_keys:
            self._warn_once(
                name,
                "readonly",
                f"Field {name!r} is not updateable in Marketo's {self.obj.label}; it is dropped "
                "from every record (key fields are kept)",
            )
            return None
        return fdesc, _KINDS.get(fdesc.data_type, _OTHER), max_length(fdesc)

    def _convert(self, item: Item, fdesc: FieldDescription, value: Any) -> Any:
        if isinstance(value, str):
            problem = self._string_problem(fdesc, value)
            if problem is not None:
                self._reject(item, INVALID_VALUE, f"field '{fdesc.name}' ({fdesc.data_type}): {problem}")
                return None
        try:
            converted = to_api(fdesc, value)
        except ValueTypeError as exc:
            self._reject(item, INVALID_VALUE, f"field '{fdesc.name}' ({fdesc.data_type}): {exc}")
            return None
        limit = max_length(fdesc)
        if limit is not None and isinstance(converted, str) and len(converted) > limit:
            self._reject(
                item,
                TOO_LONG,
                f"field '{fdesc.name}' is {len(converted)} characters long; Marketo allows {limit}",
            )
            return None
        return converted

    def _string_problem(self, fdesc: FieldDescription, value: str) -> str | None:
        """What `to_api` would let through silently: a lone surrogate, a date with a junk time.

        Also warns once per field when datetimes come without an offset (they are taken as UTC).
        """
        if has_lone_surrogate(value):
            return "contains a lone UTF-16 surrogate, which is not valid Unicode text"
        if fdesc.data_type not in ("date", "datetime"):
            return None
        text = value.strip()
        if fdesc.data_type == "date":
            if "T" in text or " " in text:  # `to_api` keeps only the date: the rest must be a time
                try:
                    parse_datetime(text)
                except ValueError as exc:
                    return f"cannot write {value!r} as date: {exc}"
            return None
        if len(text) >= 10 and not UTC_OFFSET.search(text[10:]):
            try:
                parse_datetime(text)
            except ValueError:
                return None  # `to_api` rejects it with its own reason
            self._warn_once(
                fdesc.name,
                "naive",
                f"Field {fdesc.name!r} has datetimes without a UTC offset (e.g. {value!r}); they are "
                "written as UTC",
            )
        return None

    def _key(self, record: Mapping[str, Any]) -> dict[str, Any]:
        key: dict[str, Any] = {}
        for name in self.dedupe_fields:
            key[name] = plain_value(record.get(name))
        if not _blank(record.get(self.id_field)) or self.dedupe_by == KeyMode.ID_FIELD:
            key[self.id_field] = plain_value(record.get(self.id_field))
        return key

    def _missing_message(self, missing: list[str], record: Mapping[str, Any], *, plain: bool = False) -> str:
        parts = [f"'{n}' is {_absence(record, n)}" for n in missing]
        text = ", ".join(parts) if parts else "no key field is set"
        if plain:
            return text
        needed = " + ".join(self.sync_keys)
        return f"{self.action} with dedupeBy {self.dedupe_by} needs {needed}: {text}"

    def _reject(self, item: Item, code: str, message: str) -> Item:
        item.rejection = Reason(code=code, message=message)
        return item

    def _warn_once(self, name: str, kind: str, message: str) -> None:
        if (name, kind) in self._warned:
            return
        self._warned.add((name, kind))
        self.logger.warning("%s", message)


_UNPLANNED: Any = object()  # a field `_build_sync` has not planned yet (None: dropped)
_KINDS = {
    **dict.fromkeys(STRING_TYPES, _STRING),
    **dict.fromkeys(INTEGER_TYPES, _INTEGER),
    "boolean": _BOOLEAN,
    "date": _DATE,
    "datetime": _DATETIME,
}


def _fast_time(kind: int, value: str) -> str | None:
    """`to_api` of a date or datetime string that `_string_problem` has nothing to say about.

    None (the general path decides) for anything else: another kind, non-ASCII text (maybe a lone
    surrogate), a datetime without an offset (warned about), a date with a time, a bad value.
    """
    if kind == _DATETIME:
        if not value.isascii():
            return None
        text = value.strip()
        if len(text) < 10 or not UTC_OFFSET.search(text[10:]):
            return None
        try:
            return parse_datetime(value).isoformat()
        except (ValueError, OverflowError):
            return None
    if kind == _DATE and value.isascii() and "T" not in value and " " not in value:
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            return None
    return None


def _absence(record: Mapping[str, Any], name: str) -> str:
    """How a key field is missing: 'missing', 'null' or 'blank' (empty or whitespace only)."""
    if name not in record:
        return "missing"
    return "null" if record[name] is None else "blank"


def _surrogate_message(name: str) -> str:
    return f"field '{name}' contains a lone UTF-16 surrogate, which is not valid Unicode text"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")
