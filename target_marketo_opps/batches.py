"""One call's worth of records, and when two batches may touch the same Marketo record."""

from __future__ import annotations

import collections
from collections.abc import Iterable

from .records import Item, delete_envelope_bytes, sync_envelope_bytes
from .terms import DELETE, SYNC, BatchKey, ConflictKey, Operation


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


def _unrelated(kinds: frozenset[str], other: frozenset[str]) -> bool:
    """Keys of no common kind (marketoGUID alone vs dedupe fields alone): maybe one record."""
    return bool(kinds) and bool(other) and kinds.isdisjoint(other)


def _ordered(op: Operation, other: Operation) -> bool:
    """Whether records that may be one Marketo record must keep their input order.

    Two deletes need not: in either order the record ends deleted (the later one is answered
    1013, which is no failure), so deletes by marketoGUID and deletes by dedupe fields may be in
    flight together. A sync and a delete, or two syncs, must keep their order.
    """
    return not (op == DELETE and other == DELETE)
