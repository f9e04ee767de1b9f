"""When a role waits for its opportunity: the rules the real run and the dry run both follow.

Pure functions of a record, Marketo's answer and what the run has written; no I/O, no threads.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketo_api import MarketoObject

from .records import Item, Outcome
from .terms import SYNC, Action, Status, Word

# Skip reasons that cannot mean "the role's opportunity does not exist (yet)": already exists
# (createOnly), CRM sync, a duplicate in one call, a body too large. Any other skip of a role may
# be Marketo's answer for a missing opportunity.
NOT_A_MISSING_OPPORTUNITY = frozenset({"1005", "1017", "1018", "1036", "413"})


def may_wait_for_opportunity(item: Item) -> bool:
    """Whether a record may fail only because its opportunity is not written yet: a role
    sync that may create (updateOnly never creates, so the opportunity cannot matter)."""
    return (
        item.obj is MarketoObject.OPPORTUNITY_ROLE and item.op == SYNC and item.action != Action.UPDATE_ONLY
    )


def may_mean_missing_opportunity(outcome: Outcome) -> bool:
    """Whether Marketo's answer for a role may mean its opportunity does not exist (yet)."""
    return outcome.status == Status.SKIPPED and not any(
        r.code in NOT_A_MISSING_OPPORTUNITY for r in outcome.reasons
    )


def may_be_waiting(item: Item, outcome: Outcome) -> bool:
    """Whether Marketo's answer may mean the record waits for its opportunity (cheap: record and
    answer alone); `should_hold` decides with what the run has written."""
    return may_wait_for_opportunity(item) and may_mean_missing_opportunity(outcome)


@dataclass(frozen=True)
class Sends:
    """The writer's record of a record's sends: how often, how many opportunity batches had been
    applied the last time, and Marketo's answer that held it (the outcome if it ends held)."""

    attempts: int = 0
    epoch: int = -1
    answer: Outcome | None = None


NOT_SENT = Sends()


def should_hold(
    item: Item, outcome: Outcome, sends: Sends, written_epoch: int | None, *, opportunity_in_doubt: bool
) -> bool:
    """A role skipped perhaps because its opportunity is missing, which this run may fix.

    `written_epoch`: when this run last wrote the role's opportunity (None: not written, or
    deleted since). Written before this role was sent, the opportunity was there, so the skip is
    about something else (its lead, its values) and sending it again would change nothing; unless
    a lost delete of it may have landed since (`opportunity_in_doubt`: the check may write it again).
    """
    if not may_be_waiting(item, outcome) or sends.attempts >= 2:
        return False
    return written_epoch is None or written_epoch > sends.epoch or opportunity_in_doubt


class Release(Word):
    SEND = "send"  # goes (again) now
    KEEP = "keep"  # stays held
    SKIP = "skip"  # ends with the skip Marketo gave it


def release_decision(sends: Sends, written_epoch: int | None, *, final: bool) -> Release:
    """What becomes of a held record now; `final`: every opportunity of the run is written."""
    if sends.attempts == 0:
        return Release.SEND  # waited behind an earlier record for the same role
    if written_epoch is not None and written_epoch > sends.epoch:
        return Release.SEND  # its opportunity has been written since: try once more
    return Release.SKIP if final else Release.KEEP
