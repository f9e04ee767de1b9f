"""The write planner: which batch may go now, and what becomes of a role Marketo skipped.

Rules (README, "How records are written"):

* Batches hold one object, one operation (sync or delete) and one dedupe mode, at most
  `batch_size_rows` records and at most `max_body_bytes` of serialized body.
* Per key, records are written in input order: a batch is cut when a record's key is already
  in it, and a batch waits for any in-flight batch sharing a key before it is sent. A record
  keyed by marketoGUID alone and one keyed by dedupe fields alone cannot be told apart, so
  for one object they are treated as sharing a key (`Batch.may_share_records`).
* Before any roles batch is sent, every pending opportunity is sent and its answer received.
* An opportunity delete is sent only after the roles given before it (deleting an opportunity
  deletes its roles); one by marketoGUID alone waits for every pending or in-flight role.
* A role Marketo skips is held when its opportunity may still be written by this run, and sent
  once more after that happened (at the latest at the end of input); later records for the same
  role wait behind it (`rules`). A role still held when a later delete of its opportunity is sent
  ends then, as skipped: in input order the delete would have removed it.
* Up to `max_concurrent_requests` batches are in flight.

`WritePlan` has no threads, no I/O and no clock. Records go in with `add`; `step()` says what to do
next: `Send(batch)`, `Wait(batches)` (for their answers; none named: for any answer), or None
(nothing can go until more input, or a checkpoint's `flush`). Answers come back with `answered`.
Closed batches wait in `ready`, in the order they are to be sent; the batch at its head is sent
once its conditions hold, or first puts the batches it must follow in front of itself.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from marketo_api import MarketoObject

from .batches import Batch
from .held import HeldRoles
from .records import Item, Outcome
from .rules import NOT_SENT, Release, Sends, may_be_waiting, release_decision, should_hold
from .terms import DELETE, SYNC, BatchKey, KeyKind, Status

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE


@dataclass(frozen=True)
class Send:
    batch: Batch


@dataclass(frozen=True)
class Wait:
    """Wait for the answers of these batches (all of them), or of any one if none is named."""

    batches: tuple[Batch, ...] = ()


Step = Send | Wait


class _Phase(enum.Enum):
    """Where an opportunity delete at the head of `ready` is in settling the roles before it."""

    ROLES = 1  # roles given before it (of its opportunities; by marketoGUID: of all) go first
    HELD = 2  # held roles of its opportunities end as skipped, or go if they may
    RELEASED = 3  # roles released in HELD go first, then HELD again
    DONE = 4


class _Stage(enum.Enum):
    """How far a record is on its way into a batch: each stage waits for the batches the one
    before put in `ready` (they were given earlier, so they go first)."""

    DELETES = 1  # a role: pending deletes of its opportunity go first
    CONFLICTS = 2  # open batches with an earlier record for the same key go first
    CLOSE = 3  # its batch, if it cannot take the record, goes
    ADD = 4  # into its batch, which goes when full


@dataclass
class _DeletePrep:
    phase: _Phase = _Phase.ROLES
    known: set[str] | None = None  # its opportunities, also by a marketoGUID this run wrote


class WritePlan:
    """The pending records of one run and the batches they are in; see the module docstring."""

    #: Complete roles batches kept back while the current opportunity batch fills.
    PARKED_ROLE_BATCHES = 4

    def __init__(self, *, batch_size: int, max_body_bytes: int, max_concurrent: int) -> None:
        self.batch_size = batch_size
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max(1, max_concurrent)
        self.held = HeldRoles()
        self.open: dict[BatchKey, Batch] = {}
        self.parked: list[Batch] = []  # complete roles batches, oldest first
        self.ready: collections.deque[Batch] = collections.deque()
        self.inflight: list[Batch] = []
        self._incoming: collections.deque[tuple[Item, _Stage]] = collections.deque()
        # While the batch at the head of `ready` puts others before itself: where they go.
        self._front: list[Batch] | None = None
        self._sends: dict[int, Sends] = {}  # by record number, for records sent and not final
        self._deletes: dict[int, _DeletePrep] = {}  # id() of an opportunity delete batch at the head
        self._finals: list[tuple[Item, Outcome]] = []  # held roles that ended, not taken yet
        self.opp_epoch = 0  # opportunity batches answered so far
        self.opp_written: dict[str, int] = {}  # externalOpportunityId -> epoch it was written in
        self.opp_by_guid: dict[str, str] = {}  # marketoGUID -> externalOpportunityId, as written
        #: How a held record is decided (`rules.release_decision`); a test replaces it to provoke a
        #: run that cannot finish.
        self.decide: Callable[[Item, bool], Release] = self.release_decision

    # ---- input ----------------------------------------------------------------------------

    def add(self, item: Item) -> bool:
        """A record in input order; it goes into its batch as `step()` goes on (at once if nothing
        is waiting to be sent before it). Whether `step()` has anything to do."""
        self._incoming.append((item, _Stage.DELETES if item.obj is ROLE else _Stage.CONFLICTS))
        if not self.ready and len(self._incoming) == 1:
            self._advance()
        return bool(self.ready or self._incoming)

    def enqueue(self, item: Item) -> None:
        """A held record released: into its batch as `step()` goes on."""
        self._incoming.append((item, _Stage.CONFLICTS))

    def _advance(self) -> None:
        """Take the first incoming record as far as it goes before a batch must be sent."""
        item, stage = self._incoming[0]
        key = item.batch_key
        following: _Stage | None = stage
        while following is not None and not self.ready:
            following = self._place(item, key, following)
        if following is None:
            self._incoming.popleft()
        else:
            self._incoming[0] = (item, following)

    def _place(self, item: Item, key: BatchKey, stage: _Stage) -> _Stage | None:
        """Do one stage; the next one, or None when the record is in a batch or held."""
        if stage is _Stage.DELETES:
            self._submit_deletes_before(item)
            return _Stage.CONFLICTS
        if stage is not _Stage.ADD and item.obj is ROLE and self.held.blocks(item):
            self.hold(item)  # an earlier record for this role is held: this one waits behind it
            return None
        if stage is _Stage.CONFLICTS:
            for other_key in [k for k in self.open if k != key and k.obj is item.obj]:
                other = self.open.get(other_key)
                if other is not None and other.conflicts(item):
                    self._submit(other_key)  # an earlier record for the same key goes first
            return _Stage.CLOSE
        batch = self.open.get(key)
        if stage is _Stage.CLOSE:
            if batch is not None and (batch.conflicts(item) or not batch.fits(item)):
                self._close(key)
            return _Stage.ADD
        if batch is None:
            batch = self.open[key] = Batch(key, max_rows=self.batch_size, max_bytes=self.max_body_bytes)
        batch.add(item)
        if len(batch) >= self.batch_size:
            self._close(key)
        return None

    def _place_now(self, item: Item) -> None:
        """A held record released while an opportunity delete settles: into its batch at once;
        what goes before it goes before the delete too."""
        key = item.batch_key
        stage: _Stage | None = _Stage.CONFLICTS
        while stage is not None:
            stage = self._place(item, key, stage)

    def flush(self) -> None:
        """A checkpoint: every open batch goes, opportunity syncs, then roles, then deletes."""
        for key in sorted(self.open, key=lambda k: k.send_order):
            if key.obj is OPP and key.op == DELETE:
                self._ready_parked()
            if key in self.open:
                self._submit(key)
        self._ready_parked()

    def clear(self) -> None:
        """After a failure: nothing more goes."""
        self.open.clear()
        self.parked.clear()
        self.ready.clear()
        self._incoming.clear()
        self._deletes.clear()

    @property
    def pending(self) -> bool:
        """Whether any record waits to go in a batch, or any batch is open, parked or ready."""
        return bool(self._incoming or self.open or self.parked or self.ready)

    # ---- batching ---------------------------------------------------------------------------

    def _close(self, key: BatchKey) -> None:
        """A batch is complete. Roles wait (parked) for the opportunity batch being filled.

        With singer-sdk input (each opportunity's roles just before it) sending every roles
        batch at once would first flush a part-filled opportunity batch; parking up to
        PARKED_ROLE_BATCHES lets opportunity batches fill up too.
        """
        if key.obj is ROLE and key.op == SYNC:
            self.parked.append(self.open.pop(key))
            if sum(len(b) for b in self.parked) > self.PARKED_ROLE_BATCHES * self.batch_size:
                self._to_ready([self.parked.pop(0)])
            return
        self._submit(key)
        if key.obj is OPP and key.op == SYNC:
            self._ready_parked()  # their opportunities go just before them

    def _ready_parked(self) -> None:
        parked, self.parked = self.parked, []
        self._to_ready(parked)

    def _to_ready(self, batches: list[Batch]) -> None:
        """Closed batches join the queue: at its end, or before the batch settling at its head."""
        if self._front is not None:
            self._front.extend(batches)
        else:
            self.ready.extend(batches)

    def _submit(self, key: BatchKey) -> None:
        batch = self.open.pop(key, None)
        if batch is None or not batch.items:
            return
        if batch.obj is ROLE:
            self._ready_parked()  # parked batches are older than any open one
        self._to_ready([batch])

    def _submit_deletes_before(self, role: Item) -> None:
        """A role given after a pending delete of its opportunity must not overtake it.

        A delete by marketoGUID alone may be this role's opportunity, so it goes too, and a role
        keyed by marketoGUID alone may belong to any opportunity: every pending delete goes.
        """
        for key in [k for k in self.open if k.obj is OPP and k.op == DELETE]:
            batch = self.open[key]
            if role.opportunity_id is None or any(
                not i.opportunity_id or i.opportunity_id == role.opportunity_id for i in batch.items
            ):
                self._submit(key)

    def _first(self, batches: Iterable[Batch]) -> None:
        """These go before the batch at the head of `ready`, in this order."""
        self.ready.extendleft(reversed([b for b in batches if b.items]))

    # ---- what goes now ----------------------------------------------------------------------

    def step(self) -> Step | None:
        while self.ready or self._incoming:
            if not self.ready:
                self._advance()
                continue
            batch = self.ready[0]
            if batch.obj is ROLE:
                # Every pending opportunity goes first, and every opportunity answer is in.
                opportunities = [k for k in self.open if k.obj is OPP and k.op == SYNC]
                if opportunities:
                    self._first(self.open.pop(k) for k in opportunities)
                    continue
                flying = tuple(b for b in self.inflight if b.obj is OPP)
                if flying:
                    return Wait(flying)
            elif batch.op == DELETE:
                before = self._settle_before_delete(batch)
                if before is not None:
                    if isinstance(before, Wait):
                        return before
                    continue
            waits = tuple(b for b in self.inflight if batch.may_share_records(b))
            if waits:
                return Wait(waits)
            if batch.obj is ROLE:
                # An answer since it closed may have held an earlier record for one of these roles.
                blocked = [item for item in batch.items if self.held.blocks(item)]
                if blocked:
                    batch.remove(blocked)
                    for item in blocked:
                        self.hold(item)
                    if not batch.items:
                        self.ready.popleft()
                        continue
            if len(self.inflight) >= self.max_concurrent:
                return Wait()
            self.ready.popleft()
            self._deletes.pop(id(batch), None)
            for item in batch.items:
                sends = self._sends.get(item.seq, NOT_SENT)
                self._sends[item.seq] = Sends(sends.attempts + 1, self.opp_epoch, sends.answer)
            self.inflight.append(batch)
            return Send(batch)
        return None

    def _settle_before_delete(self, delete: Batch) -> Wait | bool | None:
        """What an opportunity delete waits for: a `Wait`, True (batches put before it), or None.

        Roles given before it go first; held roles that may go now are sent too; the others are
        not in Marketo (it skipped them, whatever its reason code), so the delete cannot remove
        them, and they end as skipped: sent after a later re-create they would outlive their own
        delete (and a rerun after a crash would leave Marketo unlike a clean run). Records waiting
        behind them for the same role go before the delete.
        """
        ids = {i.opportunity_id for i in delete.items if i.opportunity_id}
        guids = [_guid_of(i) for i in delete.items if not i.opportunity_id]
        before = max(i.seq for i in delete.items)
        prep = self._deletes.setdefault(id(delete), _DeletePrep())
        while prep.phase is not _Phase.DONE:
            if prep.phase is _Phase.HELD:
                if prep.known is None:
                    prep.known = ids | {self.opp_by_guid[g] for g in guids if g and g in self.opp_by_guid}
                if not prep.known or not self.held:
                    prep.phase = _Phase.DONE
                    break
                released = self._release(prep.known, before=before, final=True)
                if not released:
                    prep.phase = _Phase.DONE
                    break
                self._place_released(released)
                prep.phase = _Phase.RELEASED
                return True
            scope = (None if guids else ids) if prep.phase is _Phase.ROLES else prep.known
            waiting = self._settle_roles(scope, before=before)
            if waiting is not None:
                return waiting
            prep.phase = _Phase.HELD
        return None

    def _settle_roles(self, opportunity_ids: set[str] | None, *, before: int) -> Wait | bool | None:
        """Roles of these opportunities (None: of any) given before record `before` go and are
        answered; held ones that may go now are released into batches."""

        def concerned(batch: Batch) -> bool:
            return any(
                i.seq < before and (opportunity_ids is None or i.opportunity_id in opportunity_ids)
                for i in batch.items
            )

        keys = [k for k, b in self.open.items() if k.obj is ROLE and concerned(b)]
        if keys or any(concerned(b) for b in self.parked):
            parked, self.parked = self.parked, []
            self._first([*parked, *(self.open.pop(k) for k in keys)])
            return True
        # Opportunity syncs in flight were given before the delete (a later sync of one of its
        # opportunities waits for it); their answers tell which held roles may go first.
        flying = tuple(
            b for b in self.inflight if (b.obj is ROLE and concerned(b)) or (b.obj is OPP and b.op == SYNC)
        )
        if flying:
            return Wait(flying)
        released = self._release(opportunity_ids, before=before, final=False)
        self._place_released(released)
        return True if released else None

    def _place_released(self, released: list[Item]) -> None:
        self._front = []
        try:
            for item in released:
                self._place_now(item)
            self._first(self._front)
        finally:
            self._front = None

    # ---- answers ----------------------------------------------------------------------------

    def note_answers(self, batch: Batch, outcomes: list[Outcome]) -> None:
        """Which opportunities this run has written (held roles wait for them), and their GUIDs."""
        if batch in self.inflight:
            self.inflight.remove(batch)
        if batch.obj is not OPP:
            return
        self.held.changed = True
        self.opp_epoch += 1
        for item, outcome in zip(batch.items, outcomes, strict=True):
            opportunity_id = self.opportunity_of(item, outcome)
            if not opportunity_id:
                continue
            if batch.op == SYNC and outcome.status in (Status.CREATED, Status.UPDATED):
                self.opp_written[opportunity_id] = self.opp_epoch
                if outcome.marketo_guid:
                    self.opp_by_guid[outcome.marketo_guid] = opportunity_id
            elif batch.op == DELETE and outcome.status == Status.DELETED:
                # Gone again: a role skipped for it now waits for it to be re-created.
                self.opp_written.pop(opportunity_id, None)

    def hold_if_waiting(
        self, item: Item, outcome: Outcome, *, opportunity_in_doubt: Callable[[str | None], bool]
    ) -> bool:
        """Hold a role Marketo skipped perhaps because its opportunity is missing; whether it was.

        `opportunity_in_doubt(id)`: whether a lost delete of it may have landed (asked only then).
        """
        if not may_be_waiting(item, outcome):
            return False  # the common case, decided without the run's state
        sends = self._sends.get(item.seq, NOT_SENT)
        opportunity_id = item.opportunity_id
        written = self.opp_written.get(opportunity_id or "")
        in_doubt = opportunity_in_doubt(opportunity_id)
        if not should_hold(item, outcome, sends, written, opportunity_in_doubt=in_doubt):
            return False
        self._sends[item.seq] = replace(sends, answer=outcome)
        self.hold(item)
        return True

    def opportunity_of(self, item: Item, outcome: Outcome) -> str | None:
        """An opportunity record's externalOpportunityId, also by a marketoGUID this run wrote."""
        guid = _guid_of(item) or outcome.marketo_guid
        return item.opportunity_id or self.opp_by_guid.get(guid or "")

    def final(self, item: Item) -> None:
        """The record has its outcome: its sends are forgotten."""
        self._sends.pop(item.seq, None)

    def take_finals(self) -> list[tuple[Item, Outcome]]:
        """Held roles that ended (with Marketo's answer that held them) since the last call."""
        finals, self._finals = self._finals, []
        return finals

    # ---- held roles -------------------------------------------------------------------------

    def hold(self, item: Item) -> None:
        """Hold a role; later records for the same role waiting in batches are held behind it."""
        self.held.changed = True
        self.held.put(item)
        keys = set(item.conflict_keys)
        for batch in [*self.open.values(), *self.parked]:
            if batch.obj is not item.obj:
                continue
            later = [i for i in batch.items if i.seq > item.seq and not keys.isdisjoint(i.conflict_keys)]
            if later:
                batch.remove(later)
                for other in later:
                    self.held.put(other)
        self.parked = [b for b in self.parked if b.items]
        for key in [k for k, b in self.open.items() if not b.items]:
            del self.open[key]

    def release_decision(self, item: Item, final: bool) -> Release:
        sends = self._sends.get(item.seq, NOT_SENT)
        return release_decision(sends, self.opp_written.get(item.opportunity_id or ""), final=final)

    def release(self, *, final: bool) -> list[Item]:
        """Unhold the roles that may go now (in input order); with `final`, end the hopeless ones."""
        return self._release(None, before=None, final=final)

    def _release(self, only: set[str] | None, *, before: int | None, final: bool) -> list[Item]:
        released, ended = self.held.release(lambda item: self.decide(item, final), only=only, before=before)
        for item in ended:
            answer = self._sends[item.seq].answer
            assert answer is not None
            self._finals.append((item, answer))
        return released


def _guid_of(item: Item) -> str | None:
    """The marketoGUID a record is keyed by, if any."""
    for key in item.conflict_keys:
        if key.kind == KeyKind.ID and isinstance(key.value, str):
            return key.value
    return None
