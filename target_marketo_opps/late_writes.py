"""Writes a lost, re-sent attempt may overtake: which records wait for a check, and what it finds.

A call whose answer was lost (timeout, 604, 5xx, dropped connection) and that was re-sent may
still be applied by Marketo later, after a later write of the same record. `LateWrites` keeps,
per Marketo record, the lost attempts and what this run wrote since (`Doubt`); the latest write
since waits, unresolved, until a query shows what Marketo holds. The writer makes the queries and
re-sends; the decisions are here.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from marketo_api import (
    MarketoClient,
    MarketoObject,
    ObjectDescription,
    Reason,
    ValueTypeError,
    chunked,
    encode_json,
    from_api,
)

from .batches import Batch
from .records import UNCERTAIN_WRITE, Item, Outcome
from .terms import DELETE, SYNC, WRITTEN, BatchKey, ConflictKey, KeyMode, Status

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE

CHECKED_NOTE = (
    "an earlier write of this record had a lost answer; a query after it showed Marketo holding "
    "this run's values"
)
RESENT_NOTE = (
    "re-sent: an earlier attempt of this record, whose answer was lost, was applied by Marketo after "
    "this run's later write (found by a query)"
)
LANDED_DELETE_NOTE = (
    "Marketo answered 'created': an earlier delete of this record, whose answer was lost, was applied "
    "after this run wrote it again"
)
LANDED_SYNC_NOTE = (
    "Marketo answered 'updated': an earlier write of this record, whose answer was lost, re-created it "
    "after this run deleted it"
)
UNCERTAIN_MESSAGE = (
    "Marketo still holds the values of an earlier attempt whose answer was lost, after this write "
    "was re-sent once; the record may not hold what this input says"
)
MAX_LOOKUP = 300  # keys per query


@dataclass
class Lost:
    """An attempt whose answer was lost: Marketo may still apply it, after later writes."""

    op: str  # SYNC | DELETE
    payload: dict[str, Any]
    due: float  # time.monotonic() from which a check is worth making


@dataclass
class Doubt:
    """One Marketo record a lost attempt may still overwrite, and what this run wrote to it since."""

    lost: list[Lost] = field(default_factory=list)
    # Fields written since the first lost attempt, merged in input order (None: deleted since).
    expected: dict[str, Any] | None = field(default_factory=dict)
    written: bool = False  # whether this run wrote the record since the first lost attempt
    pending: Item | None = None  # the latest write since, whose outcome waits for a check
    outcome: Outcome | None = None
    stale: bool = False  # a lost delete landed before the pending write: re-send all written since

    @property
    def due(self) -> float:
        return max((lost.due for lost in self.lost), default=0.0)


#: A write taken for its check: its doubt, the record, the outcome Marketo answered, and whether a
#: lost delete landed before it (then it is re-sent whatever the query shows).
Check = tuple[Doubt, Item, Outcome, bool]


class LateWrites:
    """The doubts of one run; `resolve` records a final outcome (the coordinator's)."""

    def __init__(
        self,
        descriptions: dict[MarketoObject, ObjectDescription],
        resolve: Callable[[Item, Outcome], None],
        opportunity_of: Callable[[Item, Outcome], str | None],
    ) -> None:
        self.descriptions = descriptions
        self._resolve = resolve
        self._opportunity_of = opportunity_of
        self._doubts: dict[ConflictKey, Doubt] = {}  # by every key of the record
        self._lost_cascades: dict[str, float] = {}  # opportunity id -> due of a lost delete of it
        self._checks: dict[int, Doubt] = {}  # seq of a write waiting for its check -> its doubt
        self.waiting = self._checks  # read-only view for a quick "any check waiting?"

    def __len__(self) -> int:
        """Writes waiting for a check."""
        return len(self._checks)

    # ---- what the writer asks -------------------------------------------------------------

    def in_doubt(self, item: Item) -> bool:
        """Whether a lost attempt (of the record, or a lost delete of a role's opportunity) may
        still overwrite what Marketo answered for it."""
        if self.doubt_of(item) is not None:
            return True
        return item.obj is ROLE and (item.opportunity_id or "") in self._lost_cascades

    def opportunity_in_doubt(self, opportunity_id: str | None) -> bool:
        """Whether a lost delete of this opportunity may have removed what this run wrote since."""
        doubt = self._doubts.get(ConflictKey.of_opportunity(opportunity_id)) if opportunity_id else None
        return (
            doubt is not None and doubt.pending is not None and any(lost.op == DELETE for lost in doubt.lost)
        )

    def doubt_of(self, item: Item) -> Doubt | None:
        for key in item.conflict_keys:
            doubt = self._doubts.get(key)
            if doubt is not None:
                for other in item.conflict_keys:
                    self._doubts.setdefault(other, doubt)
                return doubt
        return None

    def _new_doubt(self, item: Item) -> Doubt:
        doubt = Doubt()
        for key in item.conflict_keys:
            self._doubts[key] = doubt
        return doubt

    # ---- answers --------------------------------------------------------------------------

    def note_lost_attempts(self, batch: Batch, outcomes: list[Outcome], due: float) -> None:
        """Records of a call with a lost answer: a later write of them may be overtaken."""
        for index in sorted(batch.lost):
            item = batch.items[index]
            if not item.conflict_keys:
                continue
            doubt = self.doubt_of(item) or self._new_doubt(item)
            doubt.lost.append(Lost(item.op, item.payload, due))
            if batch.obj is OPP and batch.op == DELETE:
                # A late delete would also remove roles of the opportunity written since.
                opportunity_id = self._opportunity_of(item, outcomes[index])
                if opportunity_id:
                    self._lost_cascades[opportunity_id] = due

    def note_writes_since_lost(self, batch: Batch, outcomes: list[Outcome]) -> set[int]:
        """Positions of records whose outcome waits for a check: a lost attempt may overtake them.

        Only the latest write of a record matters to what it ends as: an earlier one still
        waiting is resolved now with its own outcome (Marketo applied it). A note about a lost
        attempt that landed before a write goes into `outcomes`.
        """
        waiting: set[int] = set()
        if not self._doubts and not self._lost_cascades:
            return waiting
        for index, (item, answer) in enumerate(zip(batch.items, outcomes, strict=True)):
            if answer.status not in WRITTEN:
                continue
            if batch.obj is OPP and batch.op == DELETE:
                self._cascade_doubts(self._opportunity_of(item, answer))
            doubt = self.doubt_of(item)
            cascade = None
            if item.obj is ROLE and item.op == SYNC:
                cascade = self._lost_cascades.get(item.opportunity_id or "")
            if doubt is None and cascade is None:
                continue
            if doubt is None:
                doubt = self._new_doubt(item)
            if cascade is not None and not any(lost.op == DELETE and not lost.payload for lost in doubt.lost):
                doubt.lost.append(Lost(DELETE, {}, cascade))
            outcome, stale = self._landed_before(item, answer, doubt)
            doubt.expected = None if item.op == DELETE else {**(doubt.expected or {}), **item.payload}
            doubt.written = True
            if doubt.pending is not None:
                assert doubt.outcome is not None
                self._checks.pop(doubt.pending.seq, None)
                self._resolve(doubt.pending, doubt.outcome)
            doubt.pending, doubt.outcome, doubt.stale = None, None, False
            if stale or self._at_risk(item.obj, doubt):
                doubt.pending, doubt.outcome, doubt.stale = item, outcome, stale
                self._checks[item.seq] = doubt
                waiting.add(index)
            else:
                outcomes[index] = outcome
        return waiting

    def _landed_before(self, item: Item, outcome: Outcome, doubt: Doubt) -> tuple[Outcome, bool]:
        """A lost attempt that Marketo applied before this write shows in Marketo's answer to it.

        `created` where this run had written the record since: a lost delete removed it, with the
        fields written since (they must be sent again: the second value). `updated` where this
        run had deleted it: a lost sync re-created it. Marketo's answer is kept, with a note.
        """
        if item.op != SYNC or not doubt.written:
            return outcome, False
        ops = {lost.op for lost in doubt.lost}
        if outcome.status == Status.CREATED and doubt.expected is not None and DELETE in ops:
            note = join_note(outcome.note, LANDED_DELETE_NOTE)
            return replace(outcome, note=note), bool(set(doubt.expected) - set(item.payload))
        if outcome.status == Status.UPDATED and doubt.expected is None and SYNC in ops:
            return replace(outcome, note=join_note(outcome.note, LANDED_SYNC_NOTE)), False
        return outcome, False

    def _cascade_doubts(self, opportunity_id: str | None) -> None:
        """An opportunity delete removed its roles: for them it is a write since, like a delete.

        A role written before it and waiting for its check ends now with its own outcome. With a
        delete by marketoGUID of an opportunity this run did not write, its roles are unknown: every
        waiting role ends so (it was given before the delete), none is re-sent after the delete.
        """
        for key, doubt in list(self._doubts.items()):
            if key.object != ROLE.value:
                continue
            if opportunity_id is not None:
                if key.role_opportunity() != opportunity_id:
                    continue
                doubt.expected = None
            if doubt.pending is not None:
                assert doubt.outcome is not None
                self._checks.pop(doubt.pending.seq, None)
                self._resolve(doubt.pending, doubt.outcome)
                doubt.pending, doubt.outcome = None, None

    def _at_risk(self, obj: MarketoObject, doubt: Doubt) -> bool:
        """Whether a lost attempt, applied now, would leave the record unlike this run's writes."""
        description = self.descriptions[obj]
        for lost in doubt.lost:
            if doubt.expected is None:
                if lost.op == SYNC:
                    return True
            elif lost.op == DELETE or _differing(description, lost.payload, doubt.expected):
                return True
        return False

    # ---- checks ---------------------------------------------------------------------------

    def last_due(self) -> float:
        return max(d.due for d in self._checks.values())

    def take_checks(self, *, now: float | None, busy: set[ConflictKey], deleting: bool) -> list[Check]:
        """The checks to make now, taken out of the waiting ones; `now` None: all of them.

        A record with a call in flight (`busy` keys) is checked later; so is a role while an
        opportunity delete, which may remove it, is in flight (`deleting`).
        """
        doubts = list(self._checks.values())
        if now is not None:
            doubts = [
                d
                for d in doubts
                if d.due <= now
                and d.pending is not None
                and busy.isdisjoint(d.pending.loose_keys)
                and not (deleting and d.pending.obj is ROLE)
            ]
        checks = [
            (d, d.pending, d.outcome, d.stale)
            for d in doubts
            if d.pending is not None and d.outcome is not None
        ]
        for doubt, item, _, _ in checks:
            del self._checks[item.seq]
            doubt.pending, doubt.outcome, doubt.stale = None, None, False
        return checks

    def overtaken(self, doubt: Doubt, item: Item, row: dict[str, Any] | None) -> bool:
        """Whether Marketo holds a lost attempt's state instead of what this run wrote since."""
        if doubt.expected is None:
            return row is not None and any(lost.op == SYNC for lost in doubt.lost)
        if row is None:
            return any(lost.op == DELETE for lost in doubt.lost)
        description = self.descriptions[item.obj]
        for lost in doubt.lost:
            if lost.op != SYNC:
                continue
            for name in _differing(description, lost.payload, doubt.expected):
                if name not in row:
                    continue
                value = row[name]
                # Neither value: someone else wrote it, not our lost attempt.
                if not _same(description, name, value, doubt.expected[name]) and _same(
                    description, name, value, lost.payload[name]
                ):
                    return True
        return False

    def after_resend(
        self, doubt: Doubt, item: Item, first: Outcome, answer: Outcome, row: dict[str, Any] | None
    ) -> Outcome:
        """A re-sent record's outcome: its first answer (what a clean run reports), if it holds now.

        A re-sent delete that Marketo no longer finds (1013) holds too.
        """
        guid = answer.marketo_guid or first.marketo_guid
        if answer.status in WRITTEN:
            if self.overtaken(doubt, item, row):
                reason = Reason(UNCERTAIN_WRITE, UNCERTAIN_MESSAGE)
                return Outcome(Status.SKIPPED, guid, (reason,), join_note(first.note, RESENT_NOTE))
        elif not (item.op == DELETE and answer.reasons and all(r.code == "1013" for r in answer.reasons)):
            return replace(answer, note=join_note(first.note, RESENT_NOTE))
        guid = None if item.op == DELETE else guid
        return replace(
            first, marketo_guid=guid or first.marketo_guid, note=join_note(first.note, RESENT_NOTE)
        )

    def resend_copies(self, checks: Sequence[tuple[Doubt, Item]]) -> dict[BatchKey, list[Item]]:
        """What to send once more: each record with everything this run wrote to it since."""
        groups: dict[BatchKey, list[Item]] = collections.defaultdict(list)
        for doubt, item in checks:
            if item.op == SYNC and doubt.expected is not None:
                payload = {**doubt.expected, **item.payload}
                copy = replace(item, payload=payload, size=len(encode_json(payload)))
            else:
                copy = replace(item)
            groups[item.batch_key].append(copy)
        return groups

    def query(self, client: MarketoClient, checks: Sequence[tuple[Doubt, Item]]) -> dict[int, dict[str, Any]]:
        """What Marketo holds for these records (by record number; absent: not found)."""
        groups: dict[tuple[MarketoObject, bool], list[tuple[Doubt, Item]]] = collections.defaultdict(list)
        for doubt, item in checks:
            groups[(item.obj, item.by == KeyMode.ID_FIELD)].append((doubt, item))
        found: dict[int, dict[str, Any]] = {}
        for (obj, by_id), members in groups.items():
            description = self.descriptions[obj]
            names = (description.id_field,) if by_id else description.dedupe_fields
            known = set(description.field_names)
            for chunk in chunked(members, MAX_LOOKUP):
                fields = {description.id_field, *description.dedupe_fields}
                for doubt, _ in chunk:
                    fields.update(n for lost in doubt.lost for n in lost.payload if n in known)
                by_key = {_lookup_key(item, names): item.seq for _, item in chunk}
                keys = [{n: item.payload.get(n) for n in names} for _, item in chunk]
                for page in client.lookup(obj, keys, fields=sorted(fields)):
                    for row in page:
                        seq = by_key.get(tuple(str(row.get(n)) for n in names))
                        if seq is not None:
                            found[seq] = row
        return found


def _differing(description: ObjectDescription, lost: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Fields a lost attempt would set to other values than this run wrote since."""
    return [
        name
        for name, value in lost.items()
        if name in expected and not _same(description, name, value, expected[name])
    ]


def _same(description: ObjectDescription, name: str, one: Any, other: Any) -> bool:
    """Equal as values of the field's dataType (Marketo answers `"1.50"` for `1.5`, UTC for offsets)."""
    try:
        fdesc = description.field(name)
        return bool(from_api(fdesc, one) == from_api(fdesc, other))
    except (KeyError, ValueTypeError):
        return bool(one == other)


def _lookup_key(item: Item, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(item.payload.get(n)) for n in names)


def join_note(note: str | None, extra: str) -> str:
    return f"{note}; {extra}" if note else extra
