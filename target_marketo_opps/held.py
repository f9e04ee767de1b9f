"""Roles held back until their opportunity may exist, and the records behind them, in input order."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator

from .records import Item
from .rules import Release
from .terms import ConflictKey


class HeldRoles:
    """The held records by record number.

    Input order matters: a record stays behind an earlier held record for the same role, whatever
    its own release decision, so `release` walks them in order.
    """

    def __init__(self) -> None:
        self._items: collections.OrderedDict[int, Item] = collections.OrderedDict()
        self._keys: collections.Counter[ConflictKey] = collections.Counter()
        self.changed = False  # something a held role waits for may have happened

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items.values())

    def blocks(self, item: Item) -> bool:
        """Whether an earlier record for the same role is held (then this one waits behind it)."""
        keys = self._keys
        return bool(keys) and any(keys[k] for k in item.conflict_keys)

    def put(self, item: Item) -> None:
        out_of_order = bool(self._items) and next(reversed(self._items)) > item.seq
        self._items[item.seq] = item
        self._keys.update(item.conflict_keys)
        if out_of_order:  # keep input order: `release` relies on it
            self._items = collections.OrderedDict(sorted(self._items.items()))

    def release(
        self,
        decide: Callable[[Item], Release],
        *,
        only: set[str] | None = None,
        before: int | None = None,
    ) -> tuple[list[Item], list[Item]]:
        """Unhold what may go now: (records to send, records ending with Marketo's last answer).

        `only`: roles of these opportunities; `before`: records given before this one. This is the
        only place that decides what leaves the hold.
        """
        released: list[Item] = []
        ended: list[Item] = []
        kept_keys: set[ConflictKey] = set()
        for item in list(self._items.values()):
            if any(k in kept_keys for k in item.conflict_keys):
                continue  # stays behind an earlier record for the same role
            decision = decide(item)
            if (
                decision == Release.KEEP
                or (only is not None and item.opportunity_id not in only)
                or (before is not None and item.seq >= before)
            ):
                kept_keys.update(item.conflict_keys)
                continue
            self._remove(item)
            (released if decision == Release.SEND else ended).append(item)
        return released, ended

    def _remove(self, item: Item) -> None:
        del self._items[item.seq]
        self._keys.subtract(item.conflict_keys)
        for k in item.conflict_keys:
            if self._keys[k] <= 0:
                del self._keys[k]
