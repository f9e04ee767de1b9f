"""From a Singer record to a Marketo payload: describe-driven hygiene, key checks, serialization.

Everything here runs in the main thread, once per record, before anything is sent. A record
either becomes an `Item` ready for a sync or delete call, or an `Item` carrying the reason it
is rejected.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
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

from .terms import DELETE, SYNC, Action, BatchKey, ConflictKey, KeyMode, Operation, Status

# Reason codes of records the target rejects (Marketo's own codes are numeric strings).
INVALID_RECORD = "invalid_record"  # fails the stream's JSON schema
MISSING_KEY = "missing_key"  # lacks the key fields the action needs
NAME_REQUIRED = "name_required"  # opportunity name null, or missing on createOnly
TOO_LONG = "too_long"  # string longer than the field's length in describe
INVALID_VALUE = "invalid_value"  # value cannot be written as the field's dataType
TOO_LARGE = "too_large"  # the record alone exceeds the request body limit

#: The skip reason of a record whose write a lost, late-applied attempt may have overtaken.
UNCERTAIN_WRITE = "uncertain_write"
#: Reasons the target itself reports for records it sent, with what they mean.
TARGET_SKIP_LABELS = {
    UNCERTAIN_WRITE: "a lost attempt Marketo applied late may have overtaken this write",
}

TARGET_REASON_LABELS = {
    INVALID_RECORD: "does not match the stream's schema",
    MISSING_KEY: "missing key fields",
    NAME_REQUIRED: "opportunity name missing",
    TOO_LONG: "value longer than the field allows",
    INVALID_VALUE: "value of the wrong type",
    TOO_LARGE: "record over the request size limit",
}

# How a field's values are converted without the general path (`_convert`) when they have the
# usual type; any other value takes the general path, which names the problem.
_STRING, _INTEGER, _BOOLEAN, _DATE, _DATETIME, _OTHER = range(6)
# A writable field: its description, its fast-path kind, and its maximum length.
_FieldPlan = tuple[FieldDescription, int, int | None]
# Marketo integers are 32-bit (`to_api` refuses larger ones).
_INT_LIMIT = 2**31


@dataclass
class Item:
    """One input record on its way to Marketo, or rejected before sending."""

    seq: int  # 1-based position among the run's records (all streams)
    stream: str
    obj: MarketoObject
    op: Operation
    action: Action
    by: KeyMode  # dedupeBy / deleteBy
    key: dict[str, Any]  # key fields as given, for results and logs
    payload: dict[str, Any] = field(default_factory=dict)
    size: int = 0  # bytes of the serialized payload
    conflict_keys: tuple[ConflictKey, ...] = ()
    rejection: Reason | None = None
    line: int | None = None  # input line of its RECORD (or BATCH) message
    batch_file: str | None = None  # for a record read from a BATCH message: the file and its line
    batch_line: int | None = None
    # (conflict_keys they were made from, value) of `loose_keys` and `key_kinds`, made on first use
    _loose: tuple[tuple[ConflictKey, ...], tuple[ConflictKey, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _kinds: tuple[tuple[ConflictKey, ...], frozenset[str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def batch_key(self) -> BatchKey:
        """The call this record goes in: records of one key share batches."""
        return BatchKey(self.obj, self.op, self.action, self.by)

    @property
    def opportunity_id(self) -> str | None:
        """The opportunity's externalOpportunityId; None for a record keyed by marketoGUID alone."""
        value = self.payload.get("externalOpportunityId", self.key.get("externalOpportunityId"))
        return value if isinstance(value, str) and value else None

    @property
    def key_kinds(self) -> frozenset[str]:
        """Which kinds of key the record carries: "dedupe", "id" or both.

        Records whose kinds do not overlap (marketoGUID only vs dedupe fields only) cannot be
        told apart: they may address the same Marketo record.
        """
        cached = self._kinds
        if cached is None or cached[0] is not self.conflict_keys:
            cached = self._kinds = (self.conflict_keys, frozenset(kind for _, kind, _ in self.conflict_keys))
        return cached[1]

    @property
    def loose_keys(self) -> tuple[ConflictKey, ...]:
        """`conflict_keys` as a Marketo that ignores case and outer spaces in keys would see them.

        The batching checks ask for them several times per record: made once (and again only if
        `conflict_keys` is replaced).
        """
        cached = self._loose
        if cached is None or cached[0] is not self.conflict_keys:
            cached = self._loose = (self.conflict_keys, loosen(self.conflict_keys))
        return cached[1]


@dataclass(frozen=True)
class Outcome:
    """What became of one record: created, updated, deleted, skipped, rejected or a would_* guess."""

    status: Status
    marketo_guid: str | None = None
    reasons: tuple[Reason, ...] = ()
    note: str | None = None

    def has_reason(self, code: str) -> bool:
        return any(r.code == code for r in self.reasons)


DELETED_AT = "_sdc_deleted_at"
_OFFSET = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")


def deletion(value: Any) -> tuple[bool, str | None]:
    """Whether `_sdc_deleted_at` asks for a delete, or why the value cannot be read as either.

    Only a timestamp (or `true`) deletes; null, "" and `false` do not. Anything else (`0`, `1`,
    "yes", a malformed time) could mean either, so the record is rejected rather than guessed at.
    """
    if value is None or value is False or (isinstance(value, str) and not value.strip()):
        return False, None
    if value is True:
        return True, None
    if isinstance(value, str):
        try:
            parse_datetime(value)
        except ValueError as exc:
            return False, f"field '{DELETED_AT}' is {value!r}, not a timestamp: {exc}"
        return True, None
    return False, (
        f"field '{DELETED_AT}' is {_plain(value)!r}; only a timestamp (or true) marks a delete, and "
        "null or false an upsert"
    )


def loosen(keys: tuple[ConflictKey, ...]) -> tuple[ConflictKey, ...]:
    """Keys as a Marketo that ignores case and outer spaces in keys would see them.

    Whether Marketo matches `externalOpportunityId` or `role` case-sensitively is not documented,
    so two records whose keys differ only so never share a batch (Marketo could answer 1036
    "duplicate") and keep their input order; everything else still tells them apart.
    """
    return tuple(ConflictKey(obj, kind, loose_value(value)) for obj, kind, value in keys)


def loose_value(value: Any) -> Any:
    """A key value as a Marketo that ignores case and outer spaces would compare it."""
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, tuple):
        return tuple(loose_value(v) for v in value)
    return value


def has_lone_surrogate(text: str) -> bool:
    """True for a string JSON can carry but UTF-8 (and so Marketo) cannot: half a surrogate pair."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def sync_envelope_bytes(action: str, dedupe_by: str) -> int:
    """Bytes of a sync body around its records: `{"action":..,"dedupeBy":..,"input":[]}`."""
    return len(encode_json({"action": action, "dedupeBy": dedupe_by, "input": []}))


def delete_envelope_bytes(delete_by: str) -> int:
    return len(encode_json({"deleteBy": delete_by, "input": []}))


def conflict_keys(
    obj: MarketoObject, description: ObjectDescription, values: Mapping[str, Any]
) -> tuple[ConflictKey, ...]:
    """Keys under which two records may address the same Marketo record (dedupe key first)."""
    keys: list[ConflictKey] = []
    dedupe = tuple(values.get(name) for name in description.dedupe_fields)
    if all(v is not None and v != "" for v in dedupe):
        keys.append(ConflictKey.dedupe(obj, dedupe))
    guid = values.get(description.id_field)
    if isinstance(guid, str) and guid:
        keys.append(ConflictKey.guid(obj, guid))
    return tuple(keys)


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
        if len(text) >= 10 and not _OFFSET.search(text[10:]):
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
            key[name] = _plain(record.get(name))
        if not _blank(record.get(self.id_field)) or self.dedupe_by == KeyMode.ID_FIELD:
            key[self.id_field] = _plain(record.get(self.id_field))
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
        if len(text) < 10 or not _OFFSET.search(text[10:]):
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


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a key value for the results file."""
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else format(value, "f")
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    return str(value)
