"""Batching, ordering and sending: one coordinator per run, shared by every sink.

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
  role wait behind it. Marketo's docs do not say which code a role of a missing opportunity gets
  (1004, 1013 and 1003 are all plausible), so any skip qualifies except the few that say
  something else (`NOT_A_MISSING_OPPORTUNITY`); holding costs nothing unless the opportunity
  really is written later. A role still held when a later delete of its opportunity is sent
  ends then, as skipped: in input order the delete would have removed it.
* A call whose answer was lost (timeout, 604, 5xx, dropped connection) and that was re-sent may
  still be applied by Marketo later, after a later write of the same record. The latest write of
  such a record since then waits, unresolved (so STATE waits too), until a query shows what
  Marketo holds, `LATE_WRITE_SETTLE_SECONDS` after the lost call's answer: if Marketo holds a
  lost attempt's values instead of the ones this run wrote since, everything written since is
  re-sent once; if Marketo still holds the lost attempt's values afterwards the record ends
  `skipped` with reason `uncertain_write`. Only records of calls with a lost answer are queried. A
  lost attempt Marketo applies after that check cannot be seen by any client.
* Up to `max_concurrent_requests` batches are in flight; every call goes through the shared
  `MarketoClient` and its process-wide limiter.
* Every record ends in exactly one outcome; `low_watermark()` tells the target which records
  all have one, so STATE never runs ahead of them.

The pieces around this module: `batches` (one call's records), `sender` (the call, its retries),
`held` (roles waiting for their opportunity), `rules` (when they wait and go, shared with the dry
run), `late_writes` (lost answers), `coordinator` (outcomes and the STATE watermark).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from marketo_api import CrmSyncEnabledError, MarketoObject

from .batches import Batch
from .coordinator import CRM_MESSAGE, Coordinator, crm_error
from .held import HeldRoles
from .late_writes import CHECKED_NOTE, Doubt, LateWrites, join_note
from .records import Item, Outcome
from .results import ResultsLog
from .rules import NOT_SENT, Release, Sends, release_decision, should_hold
from .sender import BatchSender
from .terms import DELETE, SYNC, WRITTEN, Action, BatchKey, ConflictKey, KeyKind, Status

if TYPE_CHECKING:
    from .ledger import Ledger, UnchangedRule

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE

# How long a createOnly run remembers that it saw a record in Marketo. Only records seen within
# the tolerance of `sender.UNCERTAIN_CREATE_TOLERANCE_SECONDS` matter to the lost-answer check; the
# margin keeps memory flat.
PRESENCE_MEMORY_SECONDS = 60.0


class WriteCoordinator(Coordinator):
    """Sends batches through a thread pool while the main thread keeps reading input."""

    #: Complete roles batches kept back while the current opportunity batch fills.
    PARKED_ROLE_BATCHES = 4
    #: How long after a call with a lost answer its records are checked (when written again since).
    #: Marketo does not say how long it may go on with a request its client gave up on; waiting
    #: costs time only in runs that lost an answer and wrote the same record again.
    LATE_WRITE_SETTLE_SECONDS = 20.0

    def __init__(
        self,
        sender: BatchSender,
        results: ResultsLog,
        on_progress: Callable[[], None],
        *,
        batch_size: int,
        max_body_bytes: int,
        max_concurrent: int,
        logger: logging.Logger,
        track_presence: bool = False,
        ledger: Ledger | None = None,
        unchanged_rule: UnchangedRule | None = None,
    ) -> None:
        super().__init__(results, on_progress, unchanged_rule=unchanged_rule)
        self.sender = sender
        self.ledger = ledger
        self.batch_size = batch_size
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max(1, max_concurrent)
        self.logger = logger
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._open: dict[BatchKey, Batch] = {}
        self._parked: list[Batch] = []  # complete roles batches, oldest first
        self._inflight: dict[concurrent.futures.Future[list[Outcome]], Batch] = {}
        self._held = HeldRoles()
        self._sends: dict[int, Sends] = {}  # by record number, for records sent and not resolved
        self._opp_epoch = 0  # opportunity batches applied so far
        self._opp_written: dict[str, int] = {}  # externalOpportunityId -> epoch it was written in
        self._opp_by_guid: dict[str, str] = {}  # marketoGUID -> externalOpportunityId, as written
        # createOnly runs only: keys of records this run saw in Marketo lately, and when; and
        # when an opportunity was deleted (its roles went with it).
        self._present: collections.OrderedDict[ConflictKey, float] | None = (
            collections.OrderedDict() if track_presence else None
        )
        self._opp_deleted_at: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._pumping = False
        self._aborting = False
        self._sent_batches = 0  # calls submitted so far (progress marker)
        self.late_write_settle_seconds = self.LATE_WRITE_SETTLE_SECONDS
        self._late = LateWrites(sender.descriptions, self._resolve, self._opportunity_of)

    # ---- entry points (main thread) ---------------------------------------------------

    def _add(self, item: Item) -> None:
        self._harvest()
        if item.obj is ROLE:
            self._submit_deletes_before(item)
        if item.obj is ROLE and self._held.blocks(item):
            self._hold(item)
        else:
            self._enqueue(item)
        self._pump()

    def _checkpoint(self, *, final: bool) -> None:
        progress = _ProgressGuard("checkpoint")
        while True:
            progress.check(self._progress_marker())
            self._pump()
            # Opportunity syncs, then roles, then opportunity deletes (they cascade to roles).
            for key in sorted(self._open, key=lambda k: k.send_order):
                if key.obj is OPP and key.op == DELETE:
                    self._send_parked()
                if key in self._open:
                    self._submit(key)
            self._send_parked()
            self._wait(list(self._inflight))
            if self._open or self._parked or self._inflight:
                continue
            released = self._release_scan(final=False)
            if not released and self._check_late_writes(final=final):
                continue  # before settling held roles: a re-sent opportunity may release some
            if not released and final and self._held:
                # Every opportunity of the run is written: roles still held cannot be written.
                released = self._release_scan(final=True)
            if released:
                for item in released:
                    self._enqueue(item)
                continue
            if final and self._held:
                continue  # the guard raises if settling held roles made no progress
            break
        self._on_progress()

    def _progress_marker(self) -> tuple[int, ...]:
        """Changes whenever the coordinator moves: a call sent, an outcome recorded, a role held."""
        return (
            self._sent_batches,
            len(self._unresolved),
            len(self._held),
            len(self._open),
            len(self._parked),
            len(self._inflight),
            len(self._late),
        )

    def close(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # ---- batching -----------------------------------------------------------------------

    def _enqueue(self, item: Item) -> None:
        key = item.batch_key
        for other_key in [k for k in self._open if k != key and k.obj is item.obj]:
            other = self._open.get(other_key)
            if other is not None and other.conflicts(item):
                self._submit(other_key)  # an earlier record for the same key goes first
        if item.obj is ROLE and self._held.blocks(item):
            # Sending that batch (or an answer harvested meanwhile) held an earlier record for
            # this role: this one waits behind it.
            self._hold(item)
            return
        batch = self._open.get(key)
        if batch is not None and (batch.conflicts(item) or not batch.fits(item)):
            self._close(key)
            batch = None
        if batch is None:
            batch = self._open[key] = Batch(key, max_rows=self.batch_size, max_bytes=self.max_body_bytes)
        batch.add(item)
        if len(batch) >= self.batch_size:
            self._close(key)

    def _close(self, key: BatchKey) -> None:
        """A batch is complete. Roles wait (parked) for the opportunity batch being filled.

        With singer-sdk input (each opportunity's roles just before it) sending every roles
        batch at once would first flush a part-filled opportunity batch; parking up to
        PARKED_ROLE_BATCHES lets opportunity batches fill up too.
        """
        obj, op = key.obj, key.op
        if obj is ROLE and op == SYNC:
            batch = self._open.pop(key)
            self._parked.append(batch)
            if sum(len(b) for b in self._parked) > self.PARKED_ROLE_BATCHES * self.batch_size:
                self._send(self._parked.pop(0))
            return
        self._submit(key)
        if obj is OPP and op == SYNC:
            self._send_parked()  # their opportunities have just been sent

    def _send_parked(self) -> None:
        while self._parked:
            self._send(self._parked.pop(0))

    def _submit(self, key: BatchKey) -> None:
        batch = self._open.pop(key, None)
        if batch is None or not batch.items:
            return
        if batch.obj is ROLE:
            self._send_parked()  # parked batches are older than any open one
        self._send(batch)

    def _send(self, batch: Batch) -> None:
        if batch.obj is ROLE:
            self._flush_opportunities()
        elif batch.op == DELETE:
            # Deleting an opportunity deletes its roles: roles given before it go first. A delete
            # by marketoGUID alone does not say which opportunity it is: every role goes first.
            ids = {i.opportunity_id for i in batch.items if i.opportunity_id}
            guids = [_guid_of(i) for i in batch.items if not i.opportunity_id]
            before = max(i.seq for i in batch.items)
            self._settle_roles_for(None if guids else ids, before=before)
            known = {self._opp_by_guid[g] for g in guids if g in self._opp_by_guid}
            self._settle_held_before_delete(ids | known, before=before)
        waits = [f for f, other in self._inflight.items() if batch.may_share_records(other)]
        if waits:
            self._wait(waits)
        if batch.obj is ROLE:
            # An answer just harvested may have held an earlier record for one of these roles.
            blocked = [item for item in batch.items if self._held.blocks(item)]
            if blocked:
                batch.remove(blocked)
                for item in blocked:
                    self._hold(item)
                if not batch.items:
                    return
        while len(self._inflight) >= self.max_concurrent:
            self._wait_any()
        for item in batch.items:
            sends = self._sends.get(item.seq, NOT_SENT)
            self._sends[item.seq] = Sends(sends.attempts + 1, self._opp_epoch, sends.answer)
        if batch.op == SYNC and batch.action == Action.CREATE_ONLY:
            batch.known_present = frozenset(
                k for item in batch.items for k in item.conflict_keys if self._is_present(k)
            )
        if self.ledger is not None:
            self.ledger.forget(batch.obj, batch.items)  # on disk before the call may change them
        self._sent_batches += 1
        future = self._pool().submit(self.sender.send, batch)
        self._inflight[future] = batch

    def _submit_deletes_before(self, role: Item) -> None:
        """A role given after a pending delete of its opportunity must not overtake it.

        The delete (which cascades to the opportunity's roles) is sent now, after the roles given
        before it; a delete by marketoGUID alone may be this role's opportunity, so it goes too, and
        a role keyed by marketoGUID alone may belong to any opportunity: every pending delete goes.
        """
        for key in [k for k in self._open if k.obj is OPP and k.op == DELETE]:
            batch = self._open[key]
            if role.opportunity_id is None or any(
                not i.opportunity_id or i.opportunity_id == role.opportunity_id for i in batch.items
            ):
                self._submit(key)

    def _flush_opportunities(self) -> None:
        """Send pending opportunity syncs and wait for every opportunity call in flight.

        Pending opportunity deletes are left for later: they wait for the roles before them.
        """
        for key in [k for k in self._open if k.obj is OPP and k.op == SYNC]:
            self._submit(key)
        pending = [f for f, b in self._inflight.items() if b.obj is OPP]
        if pending:
            self._wait(pending)

    def _settle_roles_for(self, opportunity_ids: set[str] | None, *, before: int) -> None:
        """Send and settle every pending role of these opportunities (None: of any opportunity)
        given before record `before` (the delete).

        Held roles that may go now are sent too; the others are not in Marketo (it skipped
        them, whatever its reason code), so a delete cannot remove them. (Roles given
        after a pending delete of their opportunity are never pending: `_submit_deletes_before`
        sends the delete when they arrive.)
        """

        def concerned(batch: Batch) -> bool:
            return any(
                i.seq < before and (opportunity_ids is None or i.opportunity_id in opportunity_ids)
                for i in batch.items
            )

        progress = _ProgressGuard("settling roles before an opportunity delete")
        while True:
            progress.check(self._progress_marker())
            keys = [k for k, b in self._open.items() if k.obj is ROLE and concerned(b)]
            parked = any(concerned(b) for b in self._parked)
            if parked:
                self._send_parked()
            for key in keys:
                self._submit(key)
            flying = [f for f, b in self._inflight.items() if b.obj is ROLE and concerned(b)]
            # Opportunity syncs in flight were given before the delete (a later sync of one of its
            # opportunities waits for it); their answers tell which held roles may go first.
            flying += [f for f, b in self._inflight.items() if b.obj is OPP and b.op == SYNC]
            self._wait(flying)
            released = self._release_scan(final=False, only=opportunity_ids, before=before)
            for item in released:
                self._enqueue(item)
            if not keys and not parked and not flying and not released:
                return

    def _settle_held_before_delete(self, opportunity_ids: set[str], *, before: int) -> None:
        """Held roles of these opportunities given before their delete end now, as skipped.

        A clean run would have written them before the delete, which removed them with their
        opportunity; sent after a later re-create they would outlive their own delete (and a
        rerun after a crash would leave Marketo unlike a clean run). Records waiting behind them
        for the same role go before the delete.
        """
        while opportunity_ids and self._held:
            released = self._release_scan(final=True, only=opportunity_ids, before=before)
            if not released:
                return
            for item in released:
                self._enqueue(item)
            self._settle_roles_for(opportunity_ids, before=before)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_concurrent, thread_name_prefix="marketo-write"
                )
            return self._executor

    # ---- answers ------------------------------------------------------------------------

    def _wait(self, futures: list[concurrent.futures.Future[list[Outcome]]]) -> None:
        if futures:
            concurrent.futures.wait(futures)
        self._harvest()

    def _wait_any(self) -> None:
        concurrent.futures.wait(list(self._inflight), return_when=concurrent.futures.FIRST_COMPLETED)
        self._harvest()

    def _harvest(self) -> None:
        for future in [f for f in self._inflight if f.done()]:
            batch = self._inflight.pop(future)
            try:
                outcomes = future.result()
            except Exception as exc:
                self._abort(exc, batch)
                raise AssertionError("unreachable") from exc  # _abort always raises
            self._apply(batch, outcomes)

    def _apply(self, batch: Batch, outcomes: list[Outcome]) -> None:
        self._note_opportunities(batch, outcomes)
        self._note_presence(batch, outcomes)
        waiting = self._late.note_writes_since_lost(batch, outcomes)
        crm = False
        for index, (item, outcome) in enumerate(zip(batch.items, outcomes, strict=True)):
            crm = crm or outcome.has_reason("1018")
            if not self._aborting and not crm and self._should_hold(item, outcome):
                self._sends[item.seq] = replace(self._sends.get(item.seq, NOT_SENT), answer=outcome)
                self._hold(item)
                continue
            if index not in waiting:
                self._resolve(item, outcome)
        if batch.lost:
            self._late.note_lost_attempts(batch, outcomes, batch.answered_at + self.late_write_settle_seconds)
        if self.ledger is not None and not crm:
            self.ledger.remember(batch.obj, self._certainly_accepted(batch, outcomes))
        if crm and not self._aborting:
            self._abort(crm_error(), None)

    def _certainly_accepted(self, batch: Batch, outcomes: list[Outcome]) -> list[tuple[Item, str]]:
        """Records whose values Marketo holds as far as any client can know, with their GUIDs.

        Not: a record of a call whose answer was lost, or with a lost attempt earlier in this run
        (its values may be overwritten late), or a role whose opportunity had a lost delete.
        """
        accepted: list[tuple[Item, str]] = []
        for index, (item, outcome) in enumerate(zip(batch.items, outcomes, strict=True)):
            if (
                outcome.status in (Status.CREATED, Status.UPDATED)
                and outcome.marketo_guid
                and index not in batch.lost
                and not self._late.in_doubt(item)
            ):
                accepted.append((item, outcome.marketo_guid))
        return accepted

    def _note_opportunities(self, batch: Batch, outcomes: list[Outcome]) -> None:
        """Which opportunities this run has written (held roles wait for them), and their GUIDs."""
        if batch.obj is OPP:
            self._held.changed = True
            self._opp_epoch += 1
            for item, outcome in zip(batch.items, outcomes, strict=True):
                opportunity_id = self._opportunity_of(item, outcome)
                if not opportunity_id:
                    continue
                if batch.op == SYNC and outcome.status in (Status.CREATED, Status.UPDATED):
                    self._opp_written[opportunity_id] = self._opp_epoch
                    if outcome.marketo_guid:
                        self._opp_by_guid[outcome.marketo_guid] = opportunity_id
                elif batch.op == DELETE and outcome.status == Status.DELETED:
                    # Gone again: a role skipped for it now waits for it to be re-created.
                    self._opp_written.pop(opportunity_id, None)

    def _opportunity_of(self, item: Item, outcome: Outcome) -> str | None:
        """An opportunity record's externalOpportunityId, also by a marketoGUID this run wrote."""
        guid = _guid_of(item) or outcome.marketo_guid
        return item.opportunity_id or self._opp_by_guid.get(guid or "")

    def _note_presence(self, batch: Batch, outcomes: list[Outcome]) -> None:
        """Which records this run has seen in Marketo (for the createOnly lost-answer check)."""
        present = self._present
        if present is None:
            return
        now = time.monotonic()
        for item, outcome in zip(batch.items, outcomes, strict=True):
            if outcome.status in (Status.CREATED, Status.UPDATED) or outcome.has_reason("1017"):
                for key in item.conflict_keys:
                    present[key] = now
                    present.move_to_end(key)
            elif outcome.status == Status.DELETED:
                for key in item.conflict_keys:
                    present.pop(key, None)
                opportunity_id = self._opportunity_of(item, outcome) if batch.obj is OPP else None
                if opportunity_id:  # its roles went with it
                    self._opp_deleted_at[opportunity_id] = now
                    self._opp_deleted_at.move_to_end(opportunity_id)
        for memory in (present, self._opp_deleted_at):
            while memory and next(iter(memory.values())) < now - PRESENCE_MEMORY_SECONDS:
                memory.popitem(last=False)

    def _is_present(self, key: ConflictKey) -> bool:
        seen = self._present.get(key) if self._present is not None else None
        if seen is None:
            return False
        opportunity_id = key.role_opportunity()
        if opportunity_id is not None:
            deleted_at = self._opp_deleted_at.get(opportunity_id)
            return deleted_at is None or deleted_at < seen
        return True

    def _should_hold(self, item: Item, outcome: Outcome) -> bool:
        return should_hold(
            item,
            outcome,
            self._sends.get(item.seq, NOT_SENT),
            self._opp_written.get(item.opportunity_id or ""),
            opportunity_in_doubt=self._late.opportunity_in_doubt(item.opportunity_id),
        )

    # ---- held roles ---------------------------------------------------------------------

    def _hold(self, item: Item) -> None:
        """Hold a role; later records for the same role waiting in batches are held behind it."""
        self._held.changed = True
        self._held.put(item)
        keys = set(item.conflict_keys)
        for batch in [*self._open.values(), *self._parked]:
            if batch.obj is not item.obj:
                continue
            later = [i for i in batch.items if i.seq > item.seq and not keys.isdisjoint(i.conflict_keys)]
            if later:
                batch.remove(later)
                for other in later:
                    self._held.put(other)
        self._parked = [b for b in self._parked if b.items]
        for key in [k for k, b in self._open.items() if not b.items]:
            del self._open[key]

    def _pump(self) -> None:
        """Harvest answers, release held roles that may go now, repeat until nothing moves."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while True:
                self._harvest()
                if not self._held or not self._held.changed:
                    break
                self._held.changed = False
                released = self._release_scan(final=False)
                if not released:
                    break
                for item in released:
                    self._enqueue(item)
            if len(self._late):
                self._check_late_writes(final=False)
        finally:
            self._pumping = False
        self._on_progress()

    def _release_scan(
        self, *, final: bool, only: set[str] | None = None, before: int | None = None
    ) -> list[Item]:
        """Unhold the roles that may go now (in input order); settle the hopeless ones if final."""

        released, ended = self._held.release(
            lambda item: self._release_decision(item, final), only=only, before=before
        )
        for item in ended:
            answer = self._sends[item.seq].answer
            assert answer is not None
            self._resolve(item, answer)
        return released

    def _release_decision(self, item: Item, final: bool) -> Release:
        sends = self._sends.get(item.seq, NOT_SENT)
        return release_decision(sends, self._opp_written.get(item.opportunity_id or ""), final=final)

    def _resolve(self, item: Item, outcome: Outcome) -> None:
        super()._resolve(item, outcome)
        self._sends.pop(item.seq, None)

    # ---- writes that may land late ------------------------------------------------------

    def _check_late_writes(self, *, final: bool) -> bool:
        """Query the records waiting for a check; re-send once what a lost attempt overwrote.

        Without `final` only checks that are due and whose record has no call in flight are
        made; with it, every check, after waiting until the last is due. Returns whether any
        check was made.
        """
        if not len(self._late):
            return False
        if final:
            wait = self._late.last_due() - time.monotonic()
            if wait > 0:
                self.logger.info(
                    "Waiting %.1f s before checking %d records written after a lost answer",
                    wait,
                    len(self._late),
                )
                time.sleep(wait)
            checks = self._late.take_checks(now=None, busy=set(), deleting=False)
        else:
            busy = {k for b in self._inflight.values() for k in b.keys}
            deleting = any(b.obj is OPP and b.op == DELETE for b in self._inflight.values())
            checks = self._late.take_checks(now=time.monotonic(), busy=busy, deleting=deleting)
        if not checks:
            return False
        found = self._look_up_late([(d, i) for d, i, _, _ in checks])
        overtaken = [
            (d, i, o) for d, i, o, stale in checks if stale or self._late.overtaken(d, i, found.get(i.seq))
        ]
        for _, item, outcome, _ in checks:
            if not any(item is i for _, i, _ in overtaken):
                self._resolve(item, replace(outcome, note=join_note(outcome.note, CHECKED_NOTE)))
        if not overtaken:
            return True
        self.logger.warning(
            "%d records were overwritten by an earlier attempt whose answer was lost; re-sending them",
            len(overtaken),
        )
        answers = self._resend([(d, i) for d, i, _ in overtaken])
        again = [(d, i) for d, i, _ in overtaken if answers[i.seq].status in WRITTEN]
        found = self._look_up_late(again)
        for doubt, item, first in overtaken:
            outcome = self._late.after_resend(doubt, item, first, answers[item.seq], found.get(item.seq))
            self._resolve(item, outcome)
        return True

    def _look_up_late(self, checks: list[tuple[Doubt, Item]]) -> dict[int, dict[str, Any]]:
        """What Marketo holds for these records (by record number; absent: not found)."""
        try:
            return self._late.query(self.sender.client, checks)
        except Exception as exc:  # the run stops as for a failed write: answers in flight recorded
            self._abort(exc, None)
            raise AssertionError("unreachable") from exc  # _abort always raises

    def _resend(self, checks: list[tuple[Doubt, Item]]) -> dict[int, Outcome]:
        """Send once more what this run wrote since the lost attempts (opportunities first)."""
        groups = self._late.resend_copies(checks)
        answers: dict[int, Outcome] = {}
        for key in sorted(groups, key=lambda k: k.send_order):
            batches: list[Batch] = []
            for copy in groups[key]:
                if not batches or not batches[-1].fits(copy):
                    batches.append(Batch(key, max_rows=self.batch_size, max_bytes=self.max_body_bytes))
                batches[-1].add(copy)
            for batch in batches:
                try:
                    if self.ledger is not None:
                        self.ledger.forget(batch.obj, batch.items)
                    outcomes = self.sender.send(batch)
                except Exception as exc:
                    self._abort(exc, batch)
                    raise AssertionError("unreachable") from exc  # _abort always raises
                self._note_opportunities(batch, outcomes)
                for sent, outcome in zip(batch.items, outcomes, strict=True):
                    answers[sent.seq] = outcome
        return answers

    def stop(self) -> None:
        self._drain_after_failure(None)

    def _abort(self, error: BaseException, failed: Batch | None) -> None:
        """Stop the run: record what the calls still in flight answered, then raise."""
        self._drain_after_failure(failed)
        if isinstance(error, CrmSyncEnabledError) and str(error) != CRM_MESSAGE:
            raise crm_error(error)
        raise error

    def _drain_after_failure(self, failed: Batch | None) -> None:
        """Send nothing more; record what the calls still in flight answered, and sync the file."""
        self._aborting = True
        self._open.clear()
        self._parked.clear()
        if failed is not None:
            self.logger.error(
                "A %s call for %d records failed; they have no outcome and STATE stays before them",
                failed.obj.label,
                len(failed.items),
            )
        concurrent.futures.wait(list(self._inflight))
        for future, batch in list(self._inflight.items()):
            del self._inflight[future]
            try:
                self._apply(batch, future.result())
            except Exception:  # noqa: S112 - the first error is the one reported
                continue
        if len(self._late):
            self.logger.error(
                "%d records written after a lost answer could not be checked against it; they have "
                "no outcome and STATE stays before them",
                len(self._late),
            )
        self.results.sync()


class _ProgressGuard:
    """Turns a loop that stopped making progress into an error instead of a silent spin."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._last: tuple[int, ...] | None = None

    def check(self, marker: tuple[int, ...]) -> None:
        if marker == self._last:
            raise RuntimeError(
                f"internal error in target-marketo-opps: {self.what} made no progress (state {marker}); "
                "please report this with the input that caused it"
            )
        self._last = marker


def _guid_of(item: Item) -> str | None:
    """The marketoGUID a record is keyed by, if any."""
    for key in item.conflict_keys:
        if key.kind == KeyKind.ID and isinstance(key.value, str):
            return key.value
    return None
