"""Fetching key batches concurrently and handing them out in order.

Per key batch there are two steps:

1. the *primary* query: the batch's keys against the source's field (all pages);
2. the *follow-up* queries: the other object by `externalOpportunityId`, in chunks of 300,
   for the opportunities this run has not fetched yet.

Follow-up ids are pooled across consecutive batches until 300 are pending, so a batch that
reaches only a few new opportunities does not cost a query of its own (a lead range where
most leads have one or two roles would otherwise pay a follow-up query per key batch). The
pool spans at most `FOLLOW_UP_POOL_BATCHES` batches and is emptied at the last batch. A batch
whose ids still wait in the pool is not complete yet: `BatchResult.complete_through` names the
last batch all of whose records have been handed out, and that, not the batch number, is what
the driver may checkpoint.

Primary queries of up to `window` batches run ahead on a thread pool (through the one shared
`MarketoClient`, whose limiter caps calls in flight). Between the two steps sits the
de-duplication against the run's `SeenSet` of opportunities; it runs on the coordinating thread
in batch order, so which batch "owns" an opportunity does not depend on thread timing, and no
opportunity is fetched twice. An opportunity source asks for the roles of every matched opportunity
whose roles were not all fetched yet (`RunSeen.roles_of`: a lead source reached it, but read
only that lead's roles). Roles are de-duplicated the same way, by `marketoGUID` against a
third `SeenSet`, when they are emitted (a role can be reached through several key sources,
e.g. by its lead and by its opportunity); each plan emits roles from one step only, always
handled in batch order, so which batch emits a role is deterministic too. Results are yielded
strictly in batch order and at most `window` batches are held, so memory does not grow with the
number of keys.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from marketo_api import MAX_BATCH, MarketoClient, MarketoObject

from .keys import EXTERNAL_OPPORTUNITY_ID, KeyValue
from .seen import RunSeen, SeenSet

Record = dict[str, Any]
GUID = "marketoGUID"

#: How many consecutive key batches may pool their follow-up ids before the pool is queried
#: even if it holds fewer than 300. Bounds how far the checkpoint trails the emitted batches,
#: and so how many batches a resumed run queries again.
FOLLOW_UP_POOL_BATCHES = 20

_worker = threading.local()


class BatchCancelled(Exception):
    """Raised inside a worker's retry wait when its pipeline was abandoned."""


def interruptible_sleep(seconds: float) -> None:
    """The client's retry wait: returns early (raising) when the worker's pipeline is abandoned.

    Given to `MarketoClient(sleep=...)`, so a run that stops (kill, quota, error) does not
    wait for other batches' back-offs before the process can exit.
    """
    event: threading.Event | None = getattr(_worker, "cancelled", None)
    if event is None:
        time.sleep(seconds)
    elif event.wait(seconds):
        raise BatchCancelled("batch abandoned")


@dataclass(frozen=True)
class Plan:
    """What one key source queries, given which streams are selected."""

    primary: MarketoObject
    primary_field: str
    primary_fields: tuple[str, ...]  # the `fields` asked for
    emit_primary: bool
    follow_up: MarketoObject | None  # fetched by externalOpportunityId; None: not needed
    follow_up_fields: tuple[str, ...] = ()

    @property
    def dedupe(self) -> bool:
        """Whether opportunities must be tracked in the run's opportunity seen-set.

        Opportunities found directly are emitted once per run; opportunities referenced by
        roles are fetched once per run. Roles-only runs need no tracking of opportunities
        (emitted roles are always de-duplicated, by marketoGUID).
        """
        return self.primary is MarketoObject.OPPORTUNITY or self.follow_up is MarketoObject.OPPORTUNITY


#: The other object: the one a key batch of this object reaches by externalOpportunityId.
_LINKED = {
    MarketoObject.OPPORTUNITY: MarketoObject.OPPORTUNITY_ROLE,
    MarketoObject.OPPORTUNITY_ROLE: MarketoObject.OPPORTUNITY,
}


def make_plan(
    obj: MarketoObject,
    field_name: str,
    *,
    opportunity_fields: Sequence[str] | None,
    role_fields: Sequence[str] | None,
) -> Plan | None:
    """The plan for keys on `obj.field_name`; `*_fields` is None when that stream is not selected.

    One rule for every source and selection: query `obj` by the keys (asking only for the
    linking field when its stream is not selected, to reach the other), then fetch the linked
    object if its stream is selected. Returns None when neither stream is selected.
    """
    selected = {MarketoObject.OPPORTUNITY: opportunity_fields, MarketoObject.OPPORTUNITY_ROLE: role_fields}
    if (
        obj is MarketoObject.OPPORTUNITY
        and field_name == EXTERNAL_OPPORTUNITY_ID
        and opportunity_fields is None
    ):
        obj = MarketoObject.OPPORTUNITY_ROLE  # roles only: match them on the opportunity ids directly
    own, linked = selected[obj], selected[_LINKED[obj]]
    if own is None and linked is None:
        return None
    return Plan(
        obj,
        field_name,
        _with_key(own or ()),
        emit_primary=own is not None,
        follow_up=_LINKED[obj] if linked is not None else None,
        follow_up_fields=_with_key(linked or ()),
    )


def _with_key(fields: Sequence[str]) -> tuple[str, ...]:
    """The fields plus externalOpportunityId, which links the two objects."""
    return tuple(fields) if EXTERNAL_OPPORTUNITY_ID in fields else (*fields, EXTERNAL_OPPORTUNITY_ID)


@dataclass
class QueryCount:
    """Logical queries sent (retries are counted by the client, not here)."""

    primary: int = 0  # one per key batch
    follow_up: int = 0  # one per chunk of up to 300 new opportunity ids
    extra_pages: int = 0  # pages after the first of any query

    def add(self, other: QueryCount) -> None:
        self.primary += other.primary
        self.follow_up += other.follow_up
        self.extra_pages += other.extra_pages

    @property
    def calls(self) -> int:
        return self.primary + self.follow_up + self.extra_pages


@dataclass
class BatchResult:
    """The records of one key batch, ready to be emitted."""

    number: int  # 1-based within the source
    key_count: int
    # Every batch up to this one is fully handed out once this result is (see module docstring).
    complete_through: int = 0
    opportunities: list[Record] = field(default_factory=list)
    roles: list[Record] = field(default_factory=list)
    queries: QueryCount = field(default_factory=QueryCount)

    def records(self, obj: MarketoObject) -> list[Record]:
        return self.opportunities if obj is MarketoObject.OPPORTUNITY else self.roles


@dataclass
class _Fetched:
    records: list[Record]
    pages: int


@dataclass
class _Work:
    number: int
    keys: list[KeyValue]
    last: bool  # the source's last batch: the follow-up pool is emptied here
    primary: Future[_Fetched]
    follow_ups: list[Future[_Fetched]] | None = None  # None until de-duplicated
    result: BatchResult | None = None

    def futures(self) -> list[Future[_Fetched]]:
        return [self.primary, *(self.follow_ups or ())]

    def failed(self) -> bool:
        return any(f.done() and f.exception() is not None for f in self.futures())


class BatchPipeline:
    """Runs a plan over numbered key batches; yields BatchResults in batch order."""

    def __init__(
        self,
        client: MarketoClient,
        plan: Plan,
        seen: RunSeen,
        *,
        workers: int,
        window: int,
        pool_batches: int = FOLLOW_UP_POOL_BATCHES,
    ) -> None:
        self._client = client
        self._plan = plan
        self._seen = seen
        self._workers = workers
        self._window = max(window, 1)
        self._pool_batches = max(pool_batches, 1)
        self._cancelled = threading.Event()
        # Follow-up ids not queried yet, with the number of the batch that found them.
        self._pool: collections.deque[tuple[str, int]] = collections.deque()

    def run(self, batches: Iterable[tuple[int, list[KeyValue]]]) -> Iterator[BatchResult]:
        pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="marketo-batch")
        self._cancelled = threading.Event()
        self._pool.clear()
        inflight: collections.deque[_Work] = collections.deque()
        source = _mark_last(batches)
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            while not exhausted and len(inflight) < self._window:
                if any(w.failed() for w in inflight):
                    return  # an earlier batch failed: sending more calls would be wasted
                try:
                    number, keys, last = next(source)
                except StopIteration:
                    exhausted = True
                    return
                plan = self._plan
                future = pool.submit(self._fetch, plan.primary, plan.primary_field, keys, plan.primary_fields)
                inflight.append(_Work(number, keys, last, future))

        try:
            fill()
            while inflight:
                self._dedupe_ready(inflight, pool)
                head = inflight[0]
                if head.follow_ups is None and head.primary.done():
                    head.primary.result()  # failed primary: raise its error in batch order
                if head.follow_ups is not None and all(f.done() for f in head.follow_ups):
                    inflight.popleft()
                    result = self._finish(head)
                    fill()  # keep the pool busy while the caller emits this batch
                    yield result
                    continue
                waiting = [f for w in inflight for f in w.futures() if not f.done()]
                wait(waiting, return_when=FIRST_COMPLETED)
        finally:
            self._cancelled.set()
            for work in inflight:
                for future in work.futures():
                    future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def _dedupe_ready(self, inflight: Iterable[_Work], pool: ThreadPoolExecutor) -> None:
        """In batch order: for each batch whose primary is done, pick the new opportunities."""
        plan = self._plan
        for work in inflight:
            if work.follow_ups is not None:
                continue
            if not work.primary.done() or work.primary.exception() is not None:
                return  # order matters: later batches wait for this one
            fetched = work.primary.result()
            result = BatchResult(number=work.number, key_count=len(work.keys))
            result.queries.primary = 1
            result.queries.extra_pages = max(fetched.pages - 1, 0)
            if plan.primary is MarketoObject.OPPORTUNITY:
                new = _new_records(fetched.records, EXTERNAL_OPPORTUNITY_ID, self._seen.opportunities)
                if plan.emit_primary:
                    result.opportunities = new
                # Every matched opportunity whose roles were not all fetched yet, including
                # one a lead source reached before (that fetched only the lead's roles).
                follow_seen = self._seen.roles_of
            else:
                if plan.emit_primary:
                    result.roles = _new_records(fetched.records, GUID, self._seen.roles)
                follow_seen = self._seen.opportunities
            work.result = result
            work.follow_ups = []
            if plan.follow_up is not None:
                follow_ids = follow_seen.add_new(_ids(fetched.records, EXTERNAL_OPPORTUNITY_ID))
                self._pool.extend((key, work.number) for key in follow_ids)
                for chunk in self._take_from_pool(work):
                    work.follow_ups.append(
                        pool.submit(
                            self._fetch, plan.follow_up, EXTERNAL_OPPORTUNITY_ID, chunk, plan.follow_up_fields
                        )
                    )
            result.complete_through = self._pool[0][1] - 1 if self._pool else work.number

    def _take_from_pool(self, work: _Work) -> list[list[str]]:
        """Full chunks of 300; the rest too at the last batch or once it spans the pool's limit."""
        chunks: list[list[str]] = []
        while len(self._pool) >= MAX_BATCH:
            chunks.append([self._pool.popleft()[0] for _ in range(MAX_BATCH)])
        if self._pool and (work.last or work.number - self._pool[0][1] + 1 >= self._pool_batches):
            chunks.append([key for key, _ in self._pool])
            self._pool.clear()
        return chunks

    def _finish(self, work: _Work) -> BatchResult:
        result = work.result
        assert result is not None
        assert work.follow_ups is not None
        for future in work.follow_ups:
            fetched = future.result()  # raises the follow-up's error, in batch order
            result.queries.follow_up += 1
            result.queries.extra_pages += max(fetched.pages - 1, 0)
            if self._plan.follow_up is MarketoObject.OPPORTUNITY:
                result.opportunities.extend(fetched.records)
            else:
                result.roles.extend(_new_records(fetched.records, GUID, self._seen.roles))
        return result

    def _fetch(
        self, obj: MarketoObject, filter_type: str, values: Sequence[KeyValue], fields: Sequence[str]
    ) -> _Fetched:
        records: list[Record] = []
        pages = 0
        _worker.cancelled = self._cancelled
        try:
            for page in self._client.query(obj, filter_type, values, fields=fields):
                records.extend(page)
                pages += 1
        finally:
            _worker.cancelled = None
        return _Fetched(records, pages)


def _ids(records: list[Record], key: str) -> dict[str, None]:
    """The records' values of `key` as text, once each, in order (a record without one has none)."""
    return dict.fromkeys(str(r[key]) for r in records if r.get(key))


def _new_records(records: list[Record], key: str, seen: SeenSet) -> list[Record]:
    """The first record of each `key` value not in `seen` (which then holds it), in order."""
    new = set(seen.add_new(_ids(records, key)))
    out: list[Record] = []
    for record in records:
        value = record.get(key)
        if not value:
            out.append(record)  # cannot be told apart; Marketo always sets both keys
        elif str(value) in new:
            new.discard(str(value))
            out.append(record)
    return out


def _mark_last(batches: Iterable[tuple[int, list[KeyValue]]]) -> Iterator[tuple[int, list[KeyValue], bool]]:
    """The batches with a flag on the last one (reads one batch of keys ahead)."""
    iterator = iter(batches)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield (*current, following is None)
        current = following
