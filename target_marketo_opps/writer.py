"""The writer: runs the plan (`planner.WritePlan`) with calls in worker threads, and records outcomes.

Around the plan it does what takes time or touches the world: sends batches through `sender` in a
thread pool of `max_concurrent_requests` (every call goes through the shared `MarketoClient` and
its process-wide limiter), waits for and applies answers, remembers what a createOnly run saw in
Marketo, checks writes a lost answer may overtake (`late_writes`), keeps the write ledger, and
stops cleanly on a failure. Every record ends in exactly one outcome; `low_watermark()` tells the
target which records all have one, so STATE never runs ahead of them.

A call whose answer was lost (timeout, 604, 5xx, dropped connection) and that was re-sent may
still be applied by Marketo later, after a later write of the same record. The latest write of
such a record since then waits, unresolved (so STATE waits too), until a query shows what
Marketo holds, `LATE_WRITE_SETTLE_SECONDS` after the lost call's answer: if Marketo holds a lost
attempt's values instead of the ones this run wrote since, everything written since is re-sent
once; if Marketo still holds the lost attempt's values afterwards the record ends `skipped` with
reason `uncertain_write`. Only records of calls with a lost answer are queried. A lost attempt
Marketo applies after that check cannot be seen by any client.
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
from .late_writes import CHECKED_NOTE, Doubt, LateWrites, join_note
from .planner import Send, WritePlan
from .records import Item, Outcome
from .results import ResultsLog
from .rules import Release
from .sender import BatchSender
from .terms import DELETE, SYNC, WRITTEN, Action, ConflictKey, Status

if TYPE_CHECKING:
    from .ledger import Ledger, UnchangedRule

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE

# How long a createOnly run remembers that it saw a record in Marketo. Only records seen within
# the tolerance of `sender.UNCERTAIN_CREATE_TOLERANCE_SECONDS` matter to the lost-answer check; the
# margin keeps memory flat.
PRESENCE_MEMORY_SECONDS = 60.0

Future = concurrent.futures.Future[list[Outcome]]


class WriteCoordinator(Coordinator):
    """Sends batches through a thread pool while the main thread keeps reading input."""

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
        self.plan = WritePlan(
            batch_size=batch_size, max_body_bytes=max_body_bytes, max_concurrent=max_concurrent
        )
        # Looked up at each call, so `_release_decision` stays the one place a held role is decided.
        self.plan.decide = lambda item, final: self._release_decision(item, final)  # noqa: PLW0108
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._inflight: dict[Future, Batch] = {}
        # createOnly runs only: keys of records this run saw in Marketo lately, and when; and
        # when an opportunity was deleted (its roles went with it).
        self._present: collections.OrderedDict[ConflictKey, float] | None = (
            collections.OrderedDict() if track_presence else None
        )
        self._opp_deleted_at: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._aborting = False
        self._sent_batches = 0  # calls submitted so far (progress marker)
        self.late_write_settle_seconds = self.LATE_WRITE_SETTLE_SECONDS
        self._late = LateWrites(sender.descriptions, self._resolve, self.plan.opportunity_of)

    # ---- entry points (main thread) ---------------------------------------------------

    def _add(self, item: Item) -> None:
        self._harvest()
        if self.plan.add(item):
            self._run_plan()
        self._pump()

    def _checkpoint(self, *, final: bool) -> None:
        progress = _ProgressGuard("checkpoint")
        while True:
            progress.check(self._progress_marker())
            self._pump()
            self.plan.flush()
            self._run_plan()
            self._wait(list(self._inflight))
            if self.plan.pending or self._inflight:
                continue
            released = self._release(final=False)
            if not released and self._check_late_writes(final=final):
                continue  # before settling held roles: a re-sent opportunity may release some
            if not released and final and self.plan.held:
                # Every opportunity of the run is written: roles still held cannot be written.
                released = self._release(final=True)
            if released:
                for item in released:
                    self.plan.enqueue(item)
                self._run_plan()
                continue
            if final and self.plan.held:
                continue  # the guard raises if settling held roles made no progress
            break
        self._on_progress()

    def _progress_marker(self) -> tuple[int, ...]:
        """Changes whenever the coordinator moves: a call sent, an outcome recorded, a role held."""
        plan = self.plan
        return (
            self._sent_batches,
            len(self._unresolved),
            len(plan.held),
            len(plan.open),
            len(plan.parked),
            len(plan.ready),
            len(self._inflight),
            len(self._late),
        )

    def close(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # ---- running the plan ---------------------------------------------------------------

    def _run_plan(self) -> None:
        """Send what the plan lets go, waiting for answers where it says, until it has no more."""
        while True:
            step = self.plan.step()
            self._resolve_ended()
            if step is None:
                return
            if isinstance(step, Send):
                self._start(step.batch)
            elif step.batches:
                self._wait([f for f, b in self._inflight.items() if any(b is w for w in step.batches)])
            else:
                self._wait_any()

    def _start(self, batch: Batch) -> None:
        if batch.op == SYNC and batch.action == Action.CREATE_ONLY:
            batch.known_present = frozenset(
                k for item in batch.items for k in item.conflict_keys if self._is_present(k)
            )
        if self.ledger is not None:
            self.ledger.forget(batch.obj, batch.items)  # on disk before the call may change them
        self._sent_batches += 1
        future = self._pool().submit(self.sender.send, batch)
        self._inflight[future] = batch

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_concurrent, thread_name_prefix="marketo-write"
                )
            return self._executor

    def _pump(self) -> None:
        """Harvest answers, release held roles that may go now, repeat until nothing moves."""
        held = self.plan.held
        while True:
            self._harvest()
            if not held.changed or not held:
                break
            held.changed = False
            released = self._release(final=False)
            if not released:
                break
            for item in released:
                self.plan.enqueue(item)
            self._run_plan()
        if self._late.waiting:
            self._check_late_writes(final=False)
        self._on_progress()

    # ---- held roles ---------------------------------------------------------------------

    def _hold(self, item: Item) -> None:
        self.plan.hold(item)

    def _release(self, *, final: bool) -> list[Item]:
        released = self.plan.release(final=final)
        self._resolve_ended()
        return released

    def _release_decision(self, item: Item, final: bool) -> Release:
        return self.plan.release_decision(item, final)

    def _resolve_ended(self) -> None:
        for item, outcome in self.plan.take_finals():
            self._resolve(item, outcome)

    def _resolve(self, item: Item, outcome: Outcome) -> None:
        super()._resolve(item, outcome)
        self.plan.final(item)

    # ---- answers ------------------------------------------------------------------------

    def _wait(self, futures: list[Future]) -> None:
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
        self.plan.note_answers(batch, outcomes)
        self._note_presence(batch, outcomes)
        waiting = self._late.note_writes_since_lost(batch, outcomes)
        crm = False
        for index, (item, outcome) in enumerate(zip(batch.items, outcomes, strict=True)):
            crm = crm or outcome.has_reason("1018")
            if (
                not self._aborting
                and not crm
                and self.plan.hold_if_waiting(
                    item, outcome, opportunity_in_doubt=self._late.opportunity_in_doubt
                )
            ):
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
                opportunity_id = self.plan.opportunity_of(item, outcome) if batch.obj is OPP else None
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
                self.plan.note_answers(batch, outcomes)
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
        self.plan.clear()
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
