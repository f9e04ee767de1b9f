"""The words the target's modules share: what a call does, how records are keyed, how they end.

The enums are `str` subclasses whose values are Marketo's (or the results file's) own spellings,
so they go into request bodies, JSON and log lines unchanged and compare equal to those strings.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from marketo_api import MarketoObject


class Word(str, enum.Enum):
    """A str-valued enum that prints and formats as its value on every Python version."""

    # The str's own hash and equality, in C: Enum's `__hash__` is Python code, and these are
    # dict keys (batch keys, key kinds) on every record's way.
    __hash__ = str.__hash__

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


class Operation(Word):
    """Which endpoint a batch goes to."""

    SYNC = "sync"
    DELETE = "delete"


# The two operations by their short names, as every module spells them.
SYNC = Operation.SYNC
DELETE = Operation.DELETE


class Action(Word):
    """A sync call's `action`, or `delete` for records that delete."""

    CREATE_OR_UPDATE = "createOrUpdate"
    CREATE_ONLY = "createOnly"
    UPDATE_ONLY = "updateOnly"
    DELETE = "delete"


class KeyMode(Word):
    """A call's `dedupeBy` / `deleteBy`: the dedupe fields or the marketoGUID."""

    DEDUPE_FIELDS = "dedupeFields"
    ID_FIELD = "idField"


class KeyKind(Word):
    """Which of a record's keys a `ConflictKey` holds."""

    DEDUPE = "dedupe"
    ID = "id"


class Status(Word):
    """How a record ended (the results file's `status`)."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    UNCHANGED = "unchanged"
    WOULD_CREATE = "would_create"
    WOULD_UPDATE = "would_update"
    WOULD_DELETE = "would_delete"
    WOULD_SKIP = "would_skip"


#: Statuses of a record Marketo changed as asked.
WRITTEN = frozenset({Status.CREATED, Status.UPDATED, Status.DELETED})


class ConflictKey(NamedTuple):
    """One key of a record; two records with a common key address one Marketo record.

    `value` is the marketoGUID (kind `id`) or the tuple of dedupe field values (kind `dedupe`).
    A plain tuple, so it hashes and compares as `(object path, kind, value)`.
    """

    object: str  # MarketoObject.value
    kind: str  # KeyKind
    value: Any

    @classmethod
    def dedupe(cls, obj: MarketoObject, values: tuple[Any, ...]) -> ConflictKey:
        return cls(obj.value, KeyKind.DEDUPE, values)

    @classmethod
    def guid(cls, obj: MarketoObject, guid: str) -> ConflictKey:
        return cls(obj.value, KeyKind.ID, guid)

    @classmethod
    def of_opportunity(cls, external_id: str | None) -> ConflictKey:
        """The dedupe key of an opportunity: its externalOpportunityId."""
        return cls(MarketoObject.OPPORTUNITY.value, KeyKind.DEDUPE, (external_id,))

    def role_opportunity(self) -> str | None:
        """For a role's dedupe key: its opportunity's externalOpportunityId (the first dedupe field)."""
        if (
            self.object != MarketoObject.OPPORTUNITY_ROLE.value
            or self.kind != KeyKind.DEDUPE
            or not isinstance(self.value, tuple)
            or not self.value
        ):
            return None
        first = self.value[0]
        return first if isinstance(first, str) else None


class BatchKey(NamedTuple):
    """What one call is: records of one object, operation, action and key mode go together."""

    obj: MarketoObject
    op: Operation
    action: Action
    by: KeyMode

    @property
    def send_order(self) -> int:
        """Checkpoints send opportunity syncs, then roles, then opportunity deletes (they cascade)."""
        if self.obj is MarketoObject.OPPORTUNITY:
            return 0 if self.op == Operation.SYNC else 2
        return 1
