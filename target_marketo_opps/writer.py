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
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from marketo_api import (
    TRANSIENT_REASON_CODES,
    CrmSyncEnabledError,
    MarketoClient,
    MarketoError,
    MarketoObject,
    ObjectDescription,
    Reason,
    RecordResult,
    ValueTypeError,
    chunked,
    encode_json,
    from_api,
    parse_datetime,
)

from .records import (
    DELETE,
    SYNC,
    UNCERTAIN_WRITE,
    ConflictKey,
    Item,
    Outcome,
    delete_envelope_bytes,
    sync_envelope_bytes,
)
from .results import ResultsLog

if TYPE_CHECKING:
    from .ledger import Ledger, UnchangedRule

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE

CRM_MESSAGE = (
    "Stopping: this Marketo instance has native CRM sync (Salesforce or Microsoft Dynamics) enabled, "
    "and CRM sync makes Opportunities and Opportunity Roles read-only in Marketo (Marketo answered "
    "1018 'CRM Enabled'). No record was written; write these objects in the CRM instead."
)
# A record created by a call whose first attempt's answer was lost carries a createdAt at or
# after the moment that attempt left, give or take Marketo's whole-second createdAt and a little
# clock difference.
UNCERTAIN_CREATE_TOLERANCE_SECONDS = 2.0
# How long a createOnly run remembers that it saw a record in Marketo. Only records seen within
# the tolerance above matter to the lost-answer check; the margin keeps memory flat.
PRESENCE_MEMORY_SECONDS = 60.0


# A record whose latest write this run could not confirm against a lost, possibly late attempt.
WRITTEN = frozenset({"created", "updated", "deleted"})
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

# Skip reasons that cannot mean "the role's opportunity does not exist (yet)": already exists
# (createOnly), CRM sync, a duplicate in one call, a body too large. Any other skip of a role may
# be Marketo's answer for a missing opportunity.
NOT_A_MISSING_OPPORTUNITY = frozenset({"1005", "1017", "1018", "1036", "413"})


def may_wait_for_opportunity(item: Item) -> bool:
    """Whether a record may fail only because its opportunity is not written yet: a role
    sync that may create (updateOnly never creates, so the opportunity cannot matter)."""
    return item.obj is ROLE and item.op == SYNC and item.action != "updateOnly"


def may_mean_missing_opportunity(outcome: Outcome) -> bool:
    """Whether Marketo's answer for a role may mean its opportunity does not exist (yet)."""
    return outcome.status == "skipped" and not any(
        r.code in NOT_A_MISSING_OPPORTUNITY for r in outcome.reasons
    )


def crm_error(cause: BaseException | None = None) -> CrmSyncEnabledError:
    """The one message a CRM-synced instance gets, wherever Marketo said 1018."""
    error = CrmSyncEnabledError(CRM_MESSAGE)
    if cause is not None:
        error.__cause__ = cause
    return error


BatchKey = tuple[MarketoObject, str, str, str]  # object, op, action, by


class Batch:
    """Records for one call, with the keys they touch and their serialized size."""

    def __init__(self, key: BatchKey, *, max_rows: int, max_bytes: int) -> None:
        self.key = key
        self.obj, self.op, self.action, self.by = key
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.overhead = (
            sync_envelope_bytes(self.action, self.by) if self.op == SYNC else delete_envelope_bytes(self.by)
        )
        self.items: list[Item] = []
        self.keys: set[ConflictKey] = set()  # loose keys (`Item.loose_keys`) of the items
        self.key_kinds: collections.Counter[frozenset[str]] = collections.Counter()
        self.bytes = self.overhead
        # Keys of records this run already saw in Marketo when the batch was sent: for them an
        # "already exists" after a lost answer is real, not the lost first attempt's doing.
        self.known_present: frozenset[ConflictKey] = frozenset()
        # Set by the sender: positions of items that went in a call whose answer was lost (Marketo
        # may apply that attempt late), and when all answers were in (time.monotonic()).
        self.lost: set[int] = set()
        self.answered_at = 0.0

    def __len__(self) -> int:
        return len(self.items)

    def conflicts(self, item: Item) -> bool:
        """Whether the item may address a Marketo record one of this batch's items addresses."""
        if any(k in self.keys for k in item.loose_keys):
            return True
        return _ordered(self.op, item.op) and any(
            _unrelated(item.key_kinds, kinds) for kinds in self.key_kinds
        )

    def may_share_records(self, other: Batch) -> bool:
        """Whether the two batches may touch one Marketo record (then one waits for the other)."""
        if other.obj is not self.obj:
            return False
        if not self.keys.isdisjoint(other.keys):
            return True
        return _ordered(self.op, other.op) and any(
            _unrelated(mine, theirs) for mine in self.key_kinds for theirs in other.key_kinds
        )

    def fits(self, item: Item) -> bool:
        extra = item.size + (1 if self.items else 0)
        return len(self.items) < self.max_rows and self.bytes + extra <= self.max_bytes

    def add(self, item: Item) -> None:
        self.bytes += item.size + (1 if self.items else 0)
        self.items.append(item)
        self.keys.update(item.loose_keys)
        self.key_kinds[item.key_kinds] += 1

    def remove(self, removed: Iterable[Item]) -> None:
        gone = {id(i) for i in removed}
        kept = [i for i in self.items if id(i) not in gone]
        self.items, self.keys, self.bytes = [], set(), self.overhead
        self.key_kinds = collections.Counter()
        for item in kept:
            self.add(item)


class Coordinator:
    """What the dry run and the writer share: outcome bookkeeping and the watermark."""

    def __init__(
        self,
        results: ResultsLog,
        on_progress: Callable[[], None],
        *,
        unchanged_rule: UnchangedRule | None = None,
    ) -> None:
        self.results = results
        self._on_progress = on_progress
        self.unchanged_rule = unchanged_rule  # with a write ledger: records not to send
        self._unresolved: collections.OrderedDict[int, Item] = collections.OrderedDict()
        self._last_seq = 0
        self._depth = 0

    def accept(self, item: Item) -> None:
        """Take one record (in input order); rejected ones are recorded at once."""
        self._last_seq = item.seq
        if item.rejection is not None:
            self.results.record(item, Outcome("rejected", reasons=(item.rejection,)))
            return
        with self._busy():
            if self.unchanged_rule is not None:
                unchanged = self.unchanged_rule.check(item)
                if unchanged is not None:  # Marketo holds these values already: final, not sent
                    self.results.record(item, unchanged)
                    return
            self._unresolved[item.seq] = item
            self._add(item)

    def checkpoint(self, *, final: bool) -> None:
        """Send everything pending and wait for it; with `final`, settle held roles for good.

        A checkpoint requested while the coordinator is busy (singer-sdk drains from its
        SIGTERM/SIGINT handler, which can interrupt `accept`) does nothing: the STATE emitted
        afterwards only covers records whose outcome is already recorded, so it stays true.
        """
        if self._depth:
            return
        with self._busy():
            self._checkpoint(final=final)

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def low_watermark(self) -> int:
        """The smallest record number without an outcome (or the next one if all have one)."""
        for seq in self._unresolved:
            return seq
        return self._last_seq + 1

    def _resolve(self, item: Item, outcome: Outcome) -> None:
        if self._unresolved.pop(item.seq, None) is not None:
            self.results.record(item, outcome)

    def _add(self, item: Item) -> None:
        raise NotImplementedError

    def _checkpoint(self, *, final: bool) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release threads and connections (idempotent)."""

    def stop(self) -> None:
        """After a failure elsewhere: send nothing more, record what calls in flight answered."""


class BatchSender:
    """Sends one batch and turns Marketo's answers into outcomes (runs in worker threads)."""

    # Waits before each extra round for records Marketo skipped with a transient reason.
    TRANSIENT_RETRY_DELAYS: Sequence[float] = (2.0, 5.0, 15.0)

    def __init__(
        self,
        client: MarketoClient,
        descriptions: dict[MarketoObject, ObjectDescription],
        logger: logging.Logger,
        *,
        retry_delays: Sequence[float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.descriptions = descriptions
        self.logger = logger
        self.retry_delays = tuple(self.TRANSIENT_RETRY_DELAYS if retry_delays is None else retry_delays)
        self._sleep = sleep

    def send(self, batch: Batch) -> list[Outcome]:
        started = time.time()
        results = self._call(batch, batch.items)
        batch.lost.update(i for i, r in enumerate(results) if r.after_uncertain_attempt)
        results = self._retry_transient(batch, results)
        outcomes = [self._outcome(batch, r) for r in results]
        self._confirm_uncertain_creates(batch, results, outcomes, started)
        batch.answered_at = time.monotonic()
        return outcomes

    def _call(self, batch: Batch, items: Sequence[Item]) -> list[RecordResult]:
        payloads = [item.payload for item in items]
        try:
            if batch.op == SYNC:
                return self.client.sync(batch.obj, payloads, action=batch.action, dedupe_by=batch.by)
            return self.client.delete(batch.obj, payloads, delete_by=batch.by)
        except MarketoError as exc:
            if exc.code not in BATCH_REFUSALS_OF_ONE_RECORD:
                raise
            if len(items) == 1:
                return [RecordResult(seq=0, status="skipped", reasons=(_refusal_reason(exc),))]
            # One record made Marketo refuse the whole call (a body over the server's limit, which
            # our size estimate missed; an unknown externalSalesPersonId): halve and try again.
            middle = len(items) // 2
            self.logger.info("%s for %d records; splitting the batch in two", exc.code, len(items))
            first = self._call(batch, items[:middle])
            second = self._call(batch, items[middle:])
            return first + [replace(r, seq=r.seq + middle) for r in second]

    def _retry_transient(self, batch: Batch, results: list[RecordResult]) -> list[RecordResult]:
        """Records skipped for a transient reason go again, in ever smaller batches."""
        pending = [i for i, r in enumerate(results) if _transient(r)]
        for round_no, delay in enumerate(self.retry_delays, start=1):
            if not pending:
                break
            chunk = max(1, math.ceil(len(pending) / 2**round_no))
            self.logger.info(
                "%d %s records skipped with a transient reason (%s); retry %d in %.1f s, %d per call",
                len(pending),
                batch.obj.label,
                ",".join(sorted({r.code for i in pending for r in results[i].reasons})),
                round_no,
                delay,
                chunk,
            )
            self._sleep(delay)
            still: list[int] = []
            for start in range(0, len(pending), chunk):
                part = pending[start : start + chunk]
                answers = self._call(batch, [batch.items[i] for i in part])
                for index, answer in zip(part, answers, strict=True):
                    results[index] = answer
                    if answer.after_uncertain_attempt:
                        batch.lost.add(index)
                    if _transient(answer):
                        still.append(index)
            pending = still
        return results

    def _outcome(self, batch: Batch, result: RecordResult) -> Outcome:
        note = None
        if result.after_uncertain_attempt:
            note = "answered after a retried call whose first attempt may have been applied"
        if result.status in ("created", "updated", "deleted"):
            return Outcome(result.status, result.marketo_guid, note=note)
        if (
            result.after_uncertain_attempt
            and batch.op == DELETE
            and result.reasons
            and all(r.code == "1013" for r in result.reasons)
        ):
            # The lost first attempt deleted it; the end state the record asked for holds.
            return Outcome(
                "deleted",
                None,
                note="not found when the call was retried: the first attempt, whose answer was lost, "
                "most likely deleted it",
            )
        return Outcome("skipped", result.marketo_guid, tuple(result.reasons), note)

    def _confirm_uncertain_creates(
        self, batch: Batch, results: list[RecordResult], outcomes: list[Outcome], started: float
    ) -> None:
        """createOnly 'already exists' after a lost answer: was it our own first attempt?

        The record is looked up; if Marketo created it after our first attempt left, the outcome
        is `created`, otherwise the skip stands.
        """
        if batch.op != SYNC or batch.action != "createOnly":
            return
        doubtful = [
            i
            for i, r in enumerate(results)
            if r.after_uncertain_attempt
            and r.status == "skipped"
            and any(x.code == "1017" for x in r.reasons)
            and batch.known_present.isdisjoint(batch.items[i].conflict_keys)
        ]
        if not doubtful:
            return
        description = self.descriptions[batch.obj]
        key_fields = description.dedupe_fields
        keys = [{name: batch.items[i].payload.get(name) for name in key_fields} for i in doubtful]
        fields = [description.id_field, "createdAt", *key_fields]
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        for page in self.client.lookup(batch.obj, keys, fields=fields):
            for row in page:
                found[tuple(row.get(name) for name in key_fields)] = row
        cutoff = started - UNCERTAIN_CREATE_TOLERANCE_SECONDS
        for index, key in zip(doubtful, keys, strict=True):
            match = found.get(tuple(key[name] for name in key_fields))
            if match is None:
                continue
            created_at = _epoch(match.get("createdAt"))
            if created_at is not None and created_at >= cutoff:
                outcomes[index] = Outcome(
                    "created",
                    match.get(description.id_field),
                    note="created by the first attempt of a retried call whose answer was lost "
                    "(confirmed by its createdAt)",
                )


@dataclass
class _Lost:
    """An attempt whose answer was lost: Marketo may still apply it, after later writes."""

    op: str  # SYNC | DELETE
    payload: dict[str, Any]
    due: float  # time.monotonic() from which a check is worth making


@dataclass
class _Doubt:
    """One Marketo record a lost attempt may still overwrite, and what this run wrote to it since."""

    lost: list[_Lost] = field(default_factory=list)
    # Fields written since the first lost attempt, merged in input order (None: deleted since).
    expected: dict[str, Any] | None = field(default_factory=dict)
    written: bool = False  # whether this run wrote the record since the first lost attempt
    pending: Item | None = None  # the latest write since, whose outcome waits for a check
    outcome: Outcome | None = None
    stale: bool = False  # a lost delete landed before the pending write: re-send all written since

    @property
    def due(self) -> float:
        return max((lost.due for lost in self.lost), default=0.0)


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
        self._held: collections.OrderedDict[int, Item] = collections.OrderedDict()
        self._held_keys: collections.Counter[ConflictKey] = collections.Counter()
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
        self._held_changed = False  # something a held role waits for may have happened
        self._aborting = False
        self._sent_batches = 0  # calls submitted so far (progress marker)
        self.late_write_settle_seconds = self.LATE_WRITE_SETTLE_SECONDS
        self._doubts: dict[ConflictKey, _Doubt] = {}  # by every key of the record
        self._lost_cascades: dict[str, float] = {}  # opportunity id -> due of a lost delete of it
        self._checks: dict[int, _Doubt] = {}  # seq of a write waiting for its check -> its doubt

    # ---- entry points (main thread) ---------------------------------------------------

    def _add(self, item: Item) -> None:
        self._harvest()
        if item.obj is ROLE:
            self._submit_deletes_before(item)
        if item.obj is ROLE and self._blocked(item):
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
            for key in sorted(self._open, key=_submit_order):
                if key[0] is OPP and key[1] == DELETE:
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
            len(self._checks),
        )

    def close(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # ---- batching -----------------------------------------------------------------------

    def _enqueue(self, item: Item) -> None:
        key: BatchKey = (item.obj, item.op, item.action, item.by)
        for other_key in [k for k in self._open if k != key and k[0] is item.obj]:
            other = self._open.get(other_key)
            if other is not None and other.conflicts(item):
                self._submit(other_key)  # an earlier record for the same key goes first
        if item.obj is ROLE and self._blocked(item):
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
        obj, op = key[0], key[1]
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
            blocked = [item for item in batch.items if self._blocked(item)]
            if blocked:
                batch.remove(blocked)
                for item in blocked:
                    self._hold(item)
                if not batch.items:
                    return
        while len(self._inflight) >= self.max_concurrent:
            self._wait_any()
        for item in batch.items:
            item.attempts += 1
            item.sent_epoch = self._opp_epoch
        if batch.op == SYNC and batch.action == "createOnly":
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
        for key in [k for k in self._open if k[0] is OPP and k[1] == DELETE]:
            batch = self._open[key]
            if role.opportunity_id is None or any(
                not i.opportunity_id or i.opportunity_id == role.opportunity_id for i in batch.items
            ):
                self._submit(key)

    def _flush_opportunities(self) -> None:
        """Send pending opportunity syncs and wait for every opportunity call in flight.

        Pending opportunity deletes are left for later: they wait for the roles before them.
        """
        for key in [k for k in self._open if k[0] is OPP and k[1] == SYNC]:
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
            keys = [k for k, b in self._open.items() if k[0] is ROLE and concerned(b)]
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
        waiting = self._note_writes_since_lost(batch, outcomes)
        crm = False
        for index, (item, outcome) in enumerate(zip(batch.items, outcomes, strict=True)):
            crm = crm or outcome.has_reason("1018")
            if not self._aborting and not crm and self._should_hold(batch, item, outcome):
                item.last_outcome = outcome
                self._hold(item)
                continue
            if index not in waiting:
                self._resolve(item, outcome)
        self._note_lost_attempts(batch, outcomes)
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
                outcome.status in ("created", "updated")
                and outcome.marketo_guid
                and index not in batch.lost
                and self._doubt_of(item) is None
                and (item.obj is not ROLE or (item.opportunity_id or "") not in self._lost_cascades)
            ):
                accepted.append((item, outcome.marketo_guid))
        return accepted

    def _note_opportunities(self, batch: Batch, outcomes: list[Outcome]) -> None:
        """Which opportunities this run has written (held roles wait for them), and their GUIDs."""
        if batch.obj is OPP:
            self._held_changed = True
            self._opp_epoch += 1
            for item, outcome in zip(batch.items, outcomes, strict=True):
                opportunity_id = self._opportunity_of(item, outcome)
                if not opportunity_id:
                    continue
                if batch.op == SYNC and outcome.status in ("created", "updated"):
                    self._opp_written[opportunity_id] = self._opp_epoch
                    if outcome.marketo_guid:
                        self._opp_by_guid[outcome.marketo_guid] = opportunity_id
                elif batch.op == DELETE and outcome.status == "deleted":
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
            if outcome.status in ("created", "updated") or outcome.has_reason("1017"):
                for key in item.conflict_keys:
                    present[key] = now
                    present.move_to_end(key)
            elif outcome.status == "deleted":
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
        obj, kind, value = key
        if obj == ROLE.value and kind == "dedupe" and isinstance(value, tuple) and value:
            deleted_at = self._opp_deleted_at.get(value[0])
            return deleted_at is None or deleted_at < seen
        return True

    def _should_hold(self, batch: Batch, item: Item, outcome: Outcome) -> bool:
        """A role skipped perhaps because its opportunity is missing, which this run may fix."""
        if (
            not may_wait_for_opportunity(item)
            or not may_mean_missing_opportunity(outcome)
            or item.attempts >= 2
        ):
            return False
        written = self._opp_written.get(item.opportunity_id or "")
        # Written before this role was sent: the opportunity was there, so the skip is about
        # something else (its lead, its values) and sending it again would change nothing;
        # unless a lost delete of it may have landed since (the check may write it again).
        return written is None or written > item.sent_epoch or self._opportunity_in_doubt(item.opportunity_id)

    def _opportunity_in_doubt(self, opportunity_id: str | None) -> bool:
        """Whether a lost delete of this opportunity may have removed what this run wrote since."""
        doubt = self._doubts.get((OPP.value, "dedupe", (opportunity_id,))) if opportunity_id else None
        return (
            doubt is not None and doubt.pending is not None and any(lost.op == DELETE for lost in doubt.lost)
        )

    # ---- held roles ---------------------------------------------------------------------

    def _blocked(self, item: Item) -> bool:
        return any(self._held_keys[k] for k in item.conflict_keys)

    def _hold(self, item: Item) -> None:
        """Hold a role; later records for the same role waiting in batches are held behind it."""
        self._held_changed = True
        self._put_held(item)
        keys = set(item.conflict_keys)
        for batch in [*self._open.values(), *self._parked]:
            if batch.obj is not item.obj:
                continue
            later = [i for i in batch.items if i.seq > item.seq and not keys.isdisjoint(i.conflict_keys)]
            if later:
                batch.remove(later)
                for other in later:
                    self._put_held(other)
        self._parked = [b for b in self._parked if b.items]
        for key in [k for k, b in self._open.items() if not b.items]:
            del self._open[key]

    def _put_held(self, item: Item) -> None:
        out_of_order = bool(self._held) and next(reversed(self._held)) > item.seq
        self._held[item.seq] = item
        self._held_keys.update(item.conflict_keys)
        if out_of_order:  # keep input order: the release scan relies on it
            self._held = collections.OrderedDict(sorted(self._held.items()))

    def _unhold(self, item: Item) -> None:
        del self._held[item.seq]
        self._held_keys.subtract(item.conflict_keys)
        for k in item.conflict_keys:
            if self._held_keys[k] <= 0:
                del self._held_keys[k]

    def _release_decision(self, item: Item, final: bool) -> str:
        if item.attempts == 0:
            return "send"  # waited behind an earlier record for the same role
        written = self._opp_written.get(item.opportunity_id or "")
        if written is not None and written > item.sent_epoch:
            return "send"  # its opportunity has been written since: try once more
        return "skip" if final else "keep"

    def _pump(self) -> None:
        """Harvest answers, release held roles that may go now, repeat until nothing moves."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while True:
                self._harvest()
                if not self._held or not self._held_changed:
                    break
                self._held_changed = False
                released = self._release_scan(final=False)
                if not released:
                    break
                for item in released:
                    self._enqueue(item)
            if self._checks:
                self._check_late_writes(final=False)
        finally:
            self._pumping = False
        self._on_progress()

    def _release_scan(
        self, *, final: bool, only: set[str] | None = None, before: int | None = None
    ) -> list[Item]:
        """Unhold the roles that may go now (in input order); settle the hopeless ones if final.

        This is the only place that decides what leaves `_held`: a role stays behind an earlier
        held record for the same role, whatever its own decision.
        """
        released: list[Item] = []
        kept_keys: set[ConflictKey] = set()
        for item in list(self._held.values()):
            if any(k in kept_keys for k in item.conflict_keys):
                continue  # stays behind an earlier record for the same role
            decision = self._release_decision(item, final)
            if (
                decision == "keep"
                or (only is not None and item.opportunity_id not in only)
                or (before is not None and item.seq >= before)
            ):
                kept_keys.update(item.conflict_keys)
                continue
            self._unhold(item)
            if decision == "send":
                released.append(item)
            else:
                assert item.last_outcome is not None
                self._resolve(item, item.last_outcome)
        return released

    # ---- writes that may land late ------------------------------------------------------

    def _doubt_of(self, item: Item) -> _Doubt | None:
        for key in item.conflict_keys:
            doubt = self._doubts.get(key)
            if doubt is not None:
                for other in item.conflict_keys:
                    self._doubts.setdefault(other, doubt)
                return doubt
        return None

    def _new_doubt(self, item: Item) -> _Doubt:
        doubt = _Doubt()
        for key in item.conflict_keys:
            self._doubts[key] = doubt
        return doubt

    def _note_lost_attempts(self, batch: Batch, outcomes: list[Outcome]) -> None:
        """Records of a call with a lost answer: a later write of them may be overtaken."""
        if not batch.lost:
            return
        due = batch.answered_at + self.late_write_settle_seconds
        for index in sorted(batch.lost):
            item = batch.items[index]
            if not item.conflict_keys:
                continue
            doubt = self._doubt_of(item) or self._new_doubt(item)
            doubt.lost.append(_Lost(item.op, item.payload, due))
            if batch.obj is OPP and batch.op == DELETE:
                # A late delete would also remove roles of the opportunity written since.
                opportunity_id = self._opportunity_of(item, outcomes[index])
                if opportunity_id:
                    self._lost_cascades[opportunity_id] = due

    def _note_writes_since_lost(self, batch: Batch, outcomes: list[Outcome]) -> set[int]:
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
            doubt = self._doubt_of(item)
            cascade = None
            if item.obj is ROLE and item.op == SYNC:
                cascade = self._lost_cascades.get(item.opportunity_id or "")
            if doubt is None and cascade is None:
                continue
            if doubt is None:
                doubt = self._new_doubt(item)
            if cascade is not None and not any(lost.op == DELETE and not lost.payload for lost in doubt.lost):
                doubt.lost.append(_Lost(DELETE, {}, cascade))
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

    def _landed_before(self, item: Item, outcome: Outcome, doubt: _Doubt) -> tuple[Outcome, bool]:
        """A lost attempt that Marketo applied before this write shows in Marketo's answer to it.

        `created` where this run had written the record since: a lost delete removed it, with the
        fields written since (they must be sent again: the second value). `updated` where this
        run had deleted it: a lost sync re-created it. Marketo's answer is kept, with a note.
        """
        if item.op != SYNC or not doubt.written:
            return outcome, False
        ops = {lost.op for lost in doubt.lost}
        if outcome.status == "created" and doubt.expected is not None and DELETE in ops:
            note = _join(outcome.note, LANDED_DELETE_NOTE)
            return replace(outcome, note=note), bool(set(doubt.expected) - set(item.payload))
        if outcome.status == "updated" and doubt.expected is None and SYNC in ops:
            return replace(outcome, note=_join(outcome.note, LANDED_SYNC_NOTE)), False
        return outcome, False

    def _cascade_doubts(self, opportunity_id: str | None) -> None:
        """An opportunity delete removed its roles: for them it is a write since, like a delete.

        A role written before it and waiting for its check ends now with its own outcome. With a
        delete by marketoGUID of an opportunity this run did not write, its roles are unknown: every
        waiting role ends so (it was given before the delete), none is re-sent after the delete.
        """
        for key, doubt in list(self._doubts.items()):
            if key[0] != ROLE.value:
                continue
            if opportunity_id is not None:
                if key[1] != "dedupe" or not isinstance(key[2], tuple) or key[2][:1] != (opportunity_id,):
                    continue
                doubt.expected = None
            if doubt.pending is not None:
                assert doubt.outcome is not None
                self._checks.pop(doubt.pending.seq, None)
                self._resolve(doubt.pending, doubt.outcome)
                doubt.pending, doubt.outcome = None, None

    def _at_risk(self, obj: MarketoObject, doubt: _Doubt) -> bool:
        """Whether a lost attempt, applied now, would leave the record unlike this run's writes."""
        description = self.sender.descriptions[obj]
        for lost in doubt.lost:
            if doubt.expected is None:
                if lost.op == SYNC:
                    return True
            elif lost.op == DELETE or _differing(description, lost.payload, doubt.expected):
                return True
        return False

    def _check_late_writes(self, *, final: bool) -> bool:
        """Query the records waiting for a check; re-send once what a lost attempt overwrote.

        Without `final` only checks that are due and whose record has no call in flight are
        made; with it, every check, after waiting until the last is due. Returns whether any
        check was made.
        """
        if not self._checks:
            return False
        now = time.monotonic()
        doubts = list(self._checks.values())
        if final:
            wait = max(d.due for d in doubts) - now
            if wait > 0:
                self.logger.info(
                    "Waiting %.1f s before checking %d records written after a lost answer",
                    wait,
                    len(doubts),
                )
                time.sleep(wait)
        else:
            # A record with a call in flight is checked later; so is a role while an opportunity
            # delete (which may remove it) is in flight.
            busy = {k for b in self._inflight.values() for k in b.keys}
            deleting = any(b.obj is OPP and b.op == DELETE for b in self._inflight.values())
            doubts = [
                d
                for d in doubts
                if d.due <= now
                and d.pending is not None
                and busy.isdisjoint(d.pending.loose_keys)
                and not (deleting and d.pending.obj is ROLE)
            ]
        if not doubts:
            return False
        checks = [
            (d, d.pending, d.outcome) for d in doubts if d.pending is not None and d.outcome is not None
        ]
        stale = {item.seq for doubt, item, _ in checks if doubt.stale}
        for doubt, item, _ in checks:
            del self._checks[item.seq]
            doubt.pending, doubt.outcome, doubt.stale = None, None, False
        found = self._look_up_late([(d, i) for d, i, _ in checks])
        overtaken = [
            (d, i, o) for d, i, o in checks if i.seq in stale or self._overtaken(d, i, found.get(i.seq))
        ]
        for _, item, outcome in checks:
            if not any(item is i for _, i, _ in overtaken):
                self._resolve(item, replace(outcome, note=_join(outcome.note, CHECKED_NOTE)))
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
            self._resolve(item, self._after_resend(doubt, item, first, answers[item.seq], found))
        return True

    def _after_resend(
        self, doubt: _Doubt, item: Item, first: Outcome, answer: Outcome, found: dict[int, dict[str, Any]]
    ) -> Outcome:
        """A re-sent record's outcome: its first answer (what a clean run reports), if it holds now.

        A re-sent delete that Marketo no longer finds (1013) holds too.
        """
        guid = answer.marketo_guid or first.marketo_guid
        if answer.status in WRITTEN:
            if self._overtaken(doubt, item, found.get(item.seq)):
                reason = Reason(UNCERTAIN_WRITE, UNCERTAIN_MESSAGE)
                return Outcome("skipped", guid, (reason,), _join(first.note, RESENT_NOTE))
        elif not (item.op == DELETE and answer.reasons and all(r.code == "1013" for r in answer.reasons)):
            return replace(answer, note=_join(first.note, RESENT_NOTE))
        guid = None if item.op == DELETE else guid
        return replace(first, marketo_guid=guid or first.marketo_guid, note=_join(first.note, RESENT_NOTE))

    def _look_up_late(self, checks: list[tuple[_Doubt, Item]]) -> dict[int, dict[str, Any]]:
        """What Marketo holds for these records (by record number; absent: not found)."""
        try:
            return self._query_late(checks)
        except Exception as exc:  # the run stops as for a failed write: answers in flight recorded
            self._abort(exc, None)
            raise AssertionError("unreachable") from exc  # _abort always raises

    def _query_late(self, checks: list[tuple[_Doubt, Item]]) -> dict[int, dict[str, Any]]:
        groups: dict[tuple[MarketoObject, str], list[tuple[_Doubt, Item]]] = collections.defaultdict(list)
        for doubt, item in checks:
            groups[(item.obj, "id" if item.by == "idField" else "dedupe")].append((doubt, item))
        found: dict[int, dict[str, Any]] = {}
        for (obj, kind), members in groups.items():
            description = self.sender.descriptions[obj]
            names = (description.id_field,) if kind == "id" else description.dedupe_fields
            known = set(description.field_names)
            for chunk in chunked(members, MAX_LOOKUP):
                fields = {description.id_field, *description.dedupe_fields}
                for doubt, _ in chunk:
                    fields.update(n for lost in doubt.lost for n in lost.payload if n in known)
                by_key = {_lookup_key(item, names): item.seq for _, item in chunk}
                keys = [{n: item.payload.get(n) for n in names} for _, item in chunk]
                for page in self.sender.client.lookup(obj, keys, fields=sorted(fields)):
                    for row in page:
                        seq = by_key.get(tuple(str(row.get(n)) for n in names))
                        if seq is not None:
                            found[seq] = row
        return found

    def _overtaken(self, doubt: _Doubt, item: Item, row: dict[str, Any] | None) -> bool:
        """Whether Marketo holds a lost attempt's state instead of what this run wrote since."""
        if doubt.expected is None:
            return row is not None and any(lost.op == SYNC for lost in doubt.lost)
        if row is None:
            return any(lost.op == DELETE for lost in doubt.lost)
        description = self.sender.descriptions[item.obj]
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

    def _resend(self, checks: list[tuple[_Doubt, Item]]) -> dict[int, Outcome]:
        """Send once more what this run wrote since the lost attempts (opportunities first)."""
        groups: dict[BatchKey, list[Item]] = collections.defaultdict(list)
        for doubt, item in checks:
            if item.op == SYNC and doubt.expected is not None:
                payload = {**doubt.expected, **item.payload}
                copy = replace(item, payload=payload, size=len(encode_json(payload)))
            else:
                copy = replace(item)
            groups[(item.obj, item.op, item.action, item.by)].append(copy)
        answers: dict[int, Outcome] = {}
        for key in sorted(groups, key=_submit_order):
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

    # ---- failure ------------------------------------------------------------------------

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
        if self._checks:
            self.logger.error(
                "%d records written after a lost answer could not be checked against it; they have "
                "no outcome and STATE stays before them",
                len(self._checks),
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


def _submit_order(key: BatchKey) -> int:
    obj, op = key[0], key[1]
    if obj is OPP:
        return 0 if op == SYNC else 2
    return 1


# Call-level codes that one bad record of a batch can cause: the batch is halved down to that record.
BATCH_REFUSALS_OF_ONE_RECORD = frozenset({"413", "718"})


def _refusal_reason(exc: MarketoError) -> Reason:
    if exc.code == "413":
        return Reason("413", "Marketo refused the request body as too large (HTTP 413)")
    return Reason(exc.code or "", exc.marketo_message or str(exc))


def _guid_of(item: Item) -> str | None:
    """The marketoGUID a record is keyed by, if any."""
    for _, kind, value in item.conflict_keys:
        if kind == "id" and isinstance(value, str):
            return value
    return None


def _transient(result: RecordResult) -> bool:
    return result.status == "skipped" and any(r.code in TRANSIENT_REASON_CODES for r in result.reasons)


def _unrelated(kinds: frozenset[str], other: frozenset[str]) -> bool:
    """Keys of no common kind (marketoGUID alone vs dedupe fields alone): maybe one record."""
    return bool(kinds) and bool(other) and kinds.isdisjoint(other)


def _ordered(op: str, other: str) -> bool:
    """Whether records that may be one Marketo record must keep their input order.

    Two deletes need not: in either order the record ends deleted (the later one is answered
    1013, which is no failure), so deletes by marketoGUID and deletes by dedupe fields may be in
    flight together. A sync and a delete, or two syncs, must keep their order.
    """
    return not (op == DELETE and other == DELETE)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_datetime(value).timestamp()
    except ValueError:
        return None


MAX_LOOKUP = 300  # keys per query


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


def _join(note: str | None, extra: str) -> str:
    return f"{note}; {extra}" if note else extra
