"""One input record on its way to Marketo (`Item`), how it ended (`Outcome`), and its keys.

`payloads.PayloadBuilder` makes the items; everything after it (batching, sending, results) reads
them. Also the target's own reason codes for records it rejects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marketo_api import (
    MarketoObject,
    ObjectDescription,
    Reason,
    encode_json,
)
from marketo_api.datatypes import parse_datetime

from .terms import Action, BatchKey, ConflictKey, KeyKind, KeyMode, Operation, Status

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
UTC_OFFSET = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")


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
        f"field '{DELETED_AT}' is {plain_value(value)!r}; only a timestamp (or true) marks a delete, and "
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
        keys.append(ConflictKey(obj.value, KeyKind.DEDUPE, dedupe))
    guid = values.get(description.id_field)
    if isinstance(guid, str) and guid:
        keys.append(ConflictKey(obj.value, KeyKind.ID, guid))
    return tuple(keys)


def plain_value(value: Any) -> Any:
    """A JSON-ready copy of a key value for the results file."""
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else format(value, "f")
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    return str(value)
