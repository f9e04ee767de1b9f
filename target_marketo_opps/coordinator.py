"""What the real run and the dry run share: one outcome per record, and the STATE watermark."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from marketo_api import CrmSyncEnabledError

from .records import Item, Outcome
from .results import ResultsLog
from .terms import Status

if TYPE_CHECKING:
    from .ledger import UnchangedRule

CRM_MESSAGE = (
    "Stopping: this Marketo instance has native CRM sync (Salesforce or Microsoft Dynamics) enabled, "
    "and CRM sync makes Opportunities and Opportunity Roles read-only in Marketo (Marketo answered "
    "1018 'CRM Enabled'). No record was written; write these objects in the CRM instead."
)


def crm_error(cause: BaseException | None = None) -> CrmSyncEnabledError:
    """The one message a CRM-synced instance gets, wherever Marketo said 1018."""
    error = CrmSyncEnabledError(CRM_MESSAGE)
    if cause is not None:
        error.__cause__ = cause
    return error


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
            self.results.record(item, Outcome(Status.REJECTED, reasons=(item.rejection,)))
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
