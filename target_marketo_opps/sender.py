"""One batch to Marketo and back: the call, 413 halving, transient retries, lost-answer creates.

Runs in the writer's worker threads; touches nothing but the batch it was given.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from marketo_api import (
    TRANSIENT_REASON_CODES,
    MarketoClient,
    MarketoError,
    MarketoObject,
    ObjectDescription,
    Reason,
    RecordResult,
    parse_datetime,
)

from .batches import Batch
from .records import Item, Outcome
from .terms import DELETE, SYNC, WRITTEN, Action, Status

# A record created by a call whose first attempt's answer was lost carries a createdAt at or
# after the moment that attempt left, give or take Marketo's whole-second createdAt and a little
# clock difference.
UNCERTAIN_CREATE_TOLERANCE_SECONDS = 2.0


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
        if result.status in WRITTEN:
            return Outcome(Status(result.status), result.marketo_guid, note=note)
        if (
            result.after_uncertain_attempt
            and batch.op == DELETE
            and result.reasons
            and all(r.code == "1013" for r in result.reasons)
        ):
            # The lost first attempt deleted it; the end state the record asked for holds.
            return Outcome(
                Status.DELETED,
                None,
                note="not found when the call was retried: the first attempt, whose answer was lost, "
                "most likely deleted it",
            )
        return Outcome(Status.SKIPPED, result.marketo_guid, tuple(result.reasons), note)

    def _confirm_uncertain_creates(
        self, batch: Batch, results: list[RecordResult], outcomes: list[Outcome], started: float
    ) -> None:
        """createOnly 'already exists' after a lost answer: was it our own first attempt?

        The record is looked up; if Marketo created it after our first attempt left, the outcome
        is `created`, otherwise the skip stands.
        """
        if batch.op != SYNC or batch.action != Action.CREATE_ONLY:
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
                    Status.CREATED,
                    match.get(description.id_field),
                    note="created by the first attempt of a retried call whose answer was lost "
                    "(confirmed by its createdAt)",
                )


BATCH_REFUSALS_OF_ONE_RECORD = frozenset({"413", "718"})


def _refusal_reason(exc: MarketoError) -> Reason:
    if exc.code == "413":
        return Reason("413", "Marketo refused the request body as too large (HTTP 413)")
    return Reason(exc.code or "", exc.marketo_message or str(exc))


def _transient(result: RecordResult) -> bool:
    return result.status == "skipped" and any(r.code in TRANSIENT_REASON_CODES for r in result.reasons)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_datetime(value).timestamp()
    except ValueError:
        return None
