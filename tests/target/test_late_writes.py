"""Writes that land late: a lost attempt Marketo applies after a later write of the same record.

The sandbox's "late" fault drops the connection of one write call without answering and applies
that write some seconds later, as a Marketo that went on with a request its client gave up on.
The client re-sends the call (its retry is applied at once), the target writes the same record
again, and then the lost attempt lands with the older values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marketo_sandbox import Fault, Sandbox
from target_marketo_opps.late_writes import RESENT_NOTE
from target_marketo_opps.records import UNCERTAIN_WRITE
from target_marketo_opps.target import TooManyRejectionsError
from target_marketo_opps.writer import WriteCoordinator
from tests.support.target import (
    FastRetryTarget,
    deleted,
    opp,
    opp_schema,
    role,
    role_schema,
    run_target,
    state,
    target_config,
)

SandboxFactory = Callable[..., Sandbox]

LATE = 1.0  # seconds after the dropped call that the sandbox applies it
SETTLE = 2.0  # the target checks that long after the lost call's answer (well after LATE)
QUERY = "GET /rest/v1/opportunities.json"


@pytest.fixture(autouse=True)
def settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WriteCoordinator, "LATE_WRITE_SETTLE_SECONDS", SETTLE)


@pytest.fixture
def sb(make_sandbox: SandboxFactory) -> Sandbox:
    return make_sandbox(opportunities=3, leads=10, heavy_leads=0, rate_limit=None)


def run(sb: Sandbox, tmp_path: Path, messages: list[dict[str, Any]], **settings: Any) -> Any:
    config = target_config(sb, tmp_path, max_calls_per_20s=100, rate_window_seconds=1, **settings)
    return run_target(config, messages, target_class=FastRetryTarget, raise_errors=False)


def queries(sb: Sandbox) -> int:
    calls = sb.stats()["calls_by_endpoint"]
    return sum(
        n
        for endpoint, n in calls.items()
        if ("_method=GET" in endpoint or endpoint.startswith("GET")) and "describe" not in endpoint
    )


def delete_then_recreate(kept: str, gone: str) -> list[dict[str, Any]]:
    """A role of another opportunity (it fixes the call order), then `gone` deleted, re-created
    and given a role."""
    return [
        role_schema(),
        role(kept, 5),
        opp_schema(),
        deleted(opp(gone)),
        opp(gone, stage="again"),
        role(gone, 3),
    ]


def wait_for_late_writes(sb: Sandbox, count: int) -> None:
    """The test's own view: the late writes have landed (they must have, before the check)."""
    deadline = time.monotonic() + 10
    while sb.stats()["faults_injected"].get("late_applied", 0) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sb.stats()["faults_injected"].get("late_applied", 0) == count


def test_a_later_write_overtaken_by_a_late_attempt_is_sent_again(sb: Sandbox, tmp_path: Path) -> None:
    # Calls: 1 describe, 2 the first sync (dropped, applied LATE s later), 3 its retry, 4 the
    # second write of L-1. L-2 went in the lost call too, but nothing wrote it again.
    sb.configure(faults=[Fault(kind="late", calls=[2], seconds=LATE)])
    messages = [opp_schema(), opp("L-1", stage="old"), opp("L-2"), opp("L-1", stage="new"), state({"s": 1})]
    result = run(sb, tmp_path, messages)
    wait_for_late_writes(sb, 1)
    assert result.error is None
    stored = sb.store.opportunity("L-1")
    assert stored is not None
    assert stored["stage"] == "new"
    assert [result.status_of(n) for n in (1, 2, 3)] == ["created", "created", "updated"]
    assert RESENT_NOTE in (result.by_record()[3]["note"] or "")
    # One query found the late values, one more confirmed the re-sent ones; L-2 was not queried.
    assert queries(sb) == 2
    assert result.states == [{"s": 1}]


def test_a_record_still_overwritten_after_the_resend_is_reported_uncertain(
    sb: Sandbox, tmp_path: Path
) -> None:
    # Calls: 1 describe, 2 and 3 the first sync and its first retry, both dropped and applied late
    # (at LATE and at 3 * LATE), 4 its second retry, 5 the second write, 6 the check (finds the
    # first late write), 7 the re-send, 8 the check after it, slowed until the second late write
    # has landed too.
    sb.configure(
        faults=[
            Fault(kind="late", calls=[2], seconds=LATE),
            Fault(kind="late", calls=[3], seconds=3 * LATE),
            Fault(kind="slow", calls=[8], seconds=2 * LATE),
        ]
    )
    messages = [opp_schema(), opp("L-1", stage="old"), opp("L-1", stage="new"), state({"s": 1})]
    result = run(sb, tmp_path, messages, max_rejections=0)
    wait_for_late_writes(sb, 2)
    assert result.status_of(2) == "skipped"
    assert result.reason_codes(2) == [UNCERTAIN_WRITE]
    assert isinstance(result.error, TooManyRejectionsError)
    stored = sb.store.opportunity("L-1")
    assert stored is not None
    assert stored["stage"] == "old"  # what the results file says: not the input's value
    assert result.states == [{"s": 1}]


def test_a_delete_overtaken_by_a_late_create_is_sent_again(sb: Sandbox, tmp_path: Path) -> None:
    sb.configure(faults=[Fault(kind="late", calls=[2], seconds=LATE)])
    messages = [opp_schema(), opp("D-1", stage="old"), deleted(opp("D-1"))]
    result = run(sb, tmp_path, messages)
    wait_for_late_writes(sb, 1)
    assert result.error is None
    assert [result.status_of(n) for n in (1, 2)] == ["created", "deleted"]
    assert RESENT_NOTE in (result.by_record()[2]["note"] or "")
    assert sb.store.opportunity("D-1") is None


def test_roles_removed_by_a_late_opportunity_delete_are_sent_again(sb: Sandbox, tmp_path: Path) -> None:
    seeded = sb.store.opportunities()
    kept, gone = seeded[0]["externalOpportunityId"], seeded[1]["externalOpportunityId"]
    # The first role (of another opportunity) fixes the call order: 1 roles describe, 2
    # opportunities describe, 3 the delete (dropped, applied late), 4 its retry, 5 the re-create,
    # 6 both roles.
    sb.configure(faults=[Fault(kind="late", calls=[3], seconds=LATE)])
    result = run(sb, tmp_path, delete_then_recreate(kept, gone))
    wait_for_late_writes(sb, 1)
    assert result.error is None
    assert [result.status_of(n) for n in (1, 2, 3, 4)] == ["created", "deleted", "created", "created"]
    assert RESENT_NOTE in (result.by_record()[3]["note"] or "")
    assert RESENT_NOTE in (result.by_record()[4]["note"] or "")
    assert sb.store.opportunity(gone) is not None
    assert sb.store.role(gone, 3, "Champion") is not None


def test_a_lost_answer_without_a_later_write_costs_no_query(sb: Sandbox, tmp_path: Path) -> None:
    sb.configure(faults=[Fault(kind="late", calls=[2], seconds=0.2)])
    messages = [opp_schema(), opp("N-1", stage="one"), opp("N-2", stage="two")]
    started = time.monotonic()
    result = run(sb, tmp_path, messages)
    assert time.monotonic() - started < SETTLE  # no wait for a check nobody needs
    wait_for_late_writes(sb, 1)
    assert result.error is None
    assert [result.status_of(n) for n in (1, 2)] == ["created", "created"]
    assert queries(sb) == 0


def test_a_role_its_opportunity_delete_removed_is_not_sent_again(sb: Sandbox, tmp_path: Path) -> None:
    # The delete's lost answer (calls as above; the dropped call is not applied) puts the role
    # written after the re-create in doubt; the second delete then removes it with its
    # opportunity, which is this run's last word on it: the check must not bring it back.
    seeded = sb.store.opportunities()
    kept, gone = seeded[0]["externalOpportunityId"], seeded[1]["externalOpportunityId"]
    sb.configure(faults=[Fault(kind="drop", calls=[3])])
    messages = [
        role_schema(),
        role(kept, 5),
        opp_schema(),
        deleted(opp(gone)),
        opp(gone, stage="again"),
        role(gone, 3),
        deleted(opp(gone)),
    ]
    result = run(sb, tmp_path, messages)
    assert sb.stats()["faults_injected"] == {"drop": 1}
    assert result.error is None
    assert [result.status_of(n) for n in (2, 3, 4, 5)] == ["deleted", "created", "created", "deleted"]
    assert sb.store.opportunity(gone) is None
    assert sb.store.role(gone, 3, "Champion") is None
    assert not [row for row in result.results if RESENT_NOTE in (row["note"] or "")]


def test_a_role_refused_after_a_late_delete_of_its_opportunity_waits_for_the_resend(
    sb: Sandbox, tmp_path: Path
) -> None:
    # Calls as in the test above; the roles call (6) is slowed until the late delete (call 3) has
    # removed the re-created opportunity, so Marketo refuses its role. The check re-sends the
    # opportunity; the role, held meanwhile, goes after it.
    seeded = sb.store.opportunities()
    kept, gone = seeded[0]["externalOpportunityId"], seeded[1]["externalOpportunityId"]
    sb.configure(
        faults=[Fault(kind="late", calls=[3], seconds=LATE), Fault(kind="slow", calls=[6], seconds=2 * LATE)]
    )
    result = run(sb, tmp_path, delete_then_recreate(kept, gone))
    wait_for_late_writes(sb, 1)
    assert result.error is None
    assert [result.status_of(n) for n in (2, 3, 4)] == ["deleted", "created", "created"]
    assert RESENT_NOTE in (result.by_record()[3]["note"] or "")
    assert sb.store.opportunity(gone) is not None
    assert sb.store.role(gone, 3, "Champion") is not None
