"""Ordering of roles and opportunities, under every code Marketo may use for "opportunity not found".

Marketo's docs do not say which code a role gets when its opportunity does not exist (yet): 1004,
1013 and 1003 are all plausible. Every test here runs against a sandbox answering each of them
(`MISSING_OPPORTUNITY_ANSWERS`); the target must deliver the same outcomes under all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marketo_api import Reason
from marketo_sandbox import Fault, Sandbox
from marketo_sandbox.config import MISSING_OPPORTUNITY_ANSWERS
from target_marketo_opps.records import Outcome
from target_marketo_opps.rules import may_mean_missing_opportunity
from tests.support.target import (
    deleted,
    opp,
    opp_schema,
    record,
    role,
    role_schema,
    run_target,
    sdk_style,
    state,
    target_config,
)

SandboxFactory = Callable[..., Sandbox]
CODES = sorted(MISSING_OPPORTUNITY_ANSWERS)


@pytest.fixture(params=CODES, ids=[f"missing-opp-{c}" for c in CODES])
def code(request: pytest.FixtureRequest) -> str:
    """The skip code the sandbox gives a role whose opportunity does not exist."""
    return str(request.param)


@pytest.fixture
def sb(make_sandbox: SandboxFactory, code: str) -> Sandbox:
    return make_sandbox(opportunities=5, leads=60, heavy_leads=0, missing_opportunity_code=code)


def config(sb: Sandbox, tmp_path: Path, **settings: Any) -> dict[str, Any]:
    return target_config(sb, tmp_path, max_calls_per_20s=100, **settings)


def run_within(seconds: float, config: dict[str, Any], messages: list[dict[str, Any]]) -> Any:
    """`run_target`, failing (instead of hanging the suite) when the run does not end in time."""
    done: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            done.append(run_target(config, messages))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(seconds)
    if errors:
        raise errors[0]
    assert done, f"the target did not finish within {seconds} s (spinning?)"
    return done[0]


def test_roles_before_their_opportunities_are_written_after_them(sb: Sandbox, tmp_path: Path) -> None:
    messages = sdk_style(12)
    run = run_target(config(sb, tmp_path, batch_size_rows=4), messages)
    assert run.statuses() == {"created": 48}
    for n in range(1, 13):
        for i in range(3):
            assert sb.store.role(f"P-{n}", 1 + (n * 5 + i) % 60, f"Role {i}") is not None
    assert run.states[-1] == {"parents": 12}
    assert run.states == sorted(run.states, key=lambda s: s["parents"])


def test_a_role_whose_opportunity_comes_much_later_waits_for_it(
    sb: Sandbox, tmp_path: Path, code: str
) -> None:
    messages = [
        role_schema(),
        role("LATE", 3),
        state({"s": 1}),
        opp_schema(),
        *[opp(f"F-{n}") for n in range(6)],
        state({"s": 2}),
        opp("LATE"),
        state({"s": 3}),
    ]
    # The role's first call must reach Marketo before LATE exists, however busy the machine is.
    sb.configure(faults=[Fault(kind="slow", path="/rest/v1/opportunities.json", seconds=0.3)])
    run = run_target(config(sb, tmp_path, batch_size_rows=1), messages)
    assert run.status_of(1) == "created"
    assert run.by_record()[1]["reasons"] == []
    assert sb.stats()["record_errors_by_code"].get(code) == 1  # tried early, held, sent again
    # {"s": 1} waited for the held role (record 1): when it was emitted, record 1 was on disk.
    assert run.states[-1] == {"s": 3}
    for emitted, done in run.state_snapshots:
        needed = {"s": {1: 1, 2: 7, 3: 8}}["s"][emitted["s"]]
        assert set(range(1, needed + 1)) <= done


def test_roles_that_cannot_be_written_are_reported_after_all_opportunities(
    sb: Sandbox, tmp_path: Path, code: str
) -> None:
    messages = [
        role_schema(),
        role("NOPE", 3),
        role("B-1", 99999),
        role("B-1", 4),
        opp_schema(),
        opp("B-1"),
    ]
    run = run_target(config(sb, tmp_path, batch_size_rows=1), messages)
    assert [run.status_of(n) for n in (1, 2, 3, 4)] == ["skipped", "skipped", "created", "created"]
    assert run.by_record()[1]["reasons"][0]["message"] == MISSING_OPPORTUNITY_ANSWERS[code].format(ext="NOPE")
    assert run.by_record()[2]["reasons"][0]["message"] == "Lead '99999' not found"


def test_an_opportunity_delete_waits_for_the_roles_given_before_it(sb: Sandbox, tmp_path: Path) -> None:
    messages = [
        role_schema(),
        role("D-1", 3),
        opp_schema(),
        opp("D-1"),
        deleted(record("opportunities", {"externalOpportunityId": "D-1"})),
    ]
    run = run_target(config(sb, tmp_path), messages)
    assert [run.status_of(n) for n in (1, 2, 3)] == ["created", "created", "deleted"]
    assert sb.store.role("D-1", 3, "Champion") is None  # removed with its opportunity


def test_a_delete_by_marketo_guid_alone_waits_for_roles_in_flight(
    make_sandbox: SandboxFactory, tmp_path: Path, code: str
) -> None:
    # The delete does not say which opportunity it is, so it waits for every role call; the
    # roles call is slowed so that a delete sent alongside it would cascade first.
    slow_roles = Fault(kind="slow", path="/rest/v1/opportunities/roles.json", seconds=0.4)
    sandbox = make_sandbox(
        opportunities=5, leads=60, heavy_leads=0, faults=[slow_roles], missing_opportunity_code=code
    )
    seeded = sandbox.store.opportunities()[0]
    eid, guid = seeded["externalOpportunityId"], seeded["marketoGUID"]
    messages = [
        role_schema(),
        *[role(eid, 10 + n, f"Role {n}") for n in range(3)],
        opp_schema(),
        deleted(record("opportunities", {"marketoGUID": guid})),
        state({"s": 1}),
    ]
    run = run_target(config(sandbox, tmp_path), messages)
    assert [run.status_of(n) for n in range(1, 5)] == ["created", "created", "created", "deleted"]
    assert sandbox.store.opportunity(eid) is None
    assert [r for r in sandbox.store.roles() if r["externalOpportunityId"] == eid] == []  # cascaded
    assert code not in sandbox.stats()["record_errors_by_code"]


def test_the_same_unwritable_role_twice_ends_without_spinning(sb: Sandbox, tmp_path: Path, code: str) -> None:
    # The first copy is held (its opportunity may still come) and the second waits behind it;
    # at the end of input both are settled instead of the checkpoint looping forever.
    messages = [role_schema(), role("NOPE-1", 3, isPrimary=True), role("NOPE-1", 3, isPrimary=False)]
    run = run_within(15, config(sb, tmp_path), messages)
    assert [run.status_of(n) for n in (1, 2)] == ["skipped", "skipped"]
    assert run.reason_codes(1) == run.reason_codes(2) == [code]


def test_the_same_role_twice_with_a_missing_lead_ends_and_emits_state(sb: Sandbox, tmp_path: Path) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("E-1")])
    messages = [role_schema(), role("E-1", 99999), role("E-1", 99999), state({"s": 1})]
    run = run_within(15, config(sb, tmp_path), messages)
    assert [run.status_of(n) for n in (1, 2)] == ["skipped", "skipped"]
    assert run.states == [{"s": 1}]


def test_a_role_after_an_opportunity_delete_is_written_after_it(
    sb: Sandbox, tmp_path: Path, code: str
) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("X-1"), opp("Y-1")])
    messages = [
        opp_schema(),
        deleted(opp("X-1")),
        role_schema(),
        role("X-1", 3),
        opp("X-1", stage="again"),
        deleted(opp("Y-1")),
        role("Y-1", 4),
    ]
    run = run_target(config(sb, tmp_path), messages)
    assert [run.status_of(n) for n in range(1, 6)] == ["deleted", "created", "created", "deleted", "skipped"]
    assert run.reason_codes(5) == [code]  # Y-1 was gone when its role came
    assert sb.store.opportunity("X-1") is not None
    assert sb.store.role("X-1", 3, "Champion") is not None  # not removed by the earlier delete
    assert sb.store.opportunity("Y-1") is None
    assert sb.store.role("Y-1", 4, "Champion") is None


def test_a_role_after_a_delete_by_marketo_guid_alone_is_written_after_it(sb: Sandbox, tmp_path: Path) -> None:
    seeded = sb.store.opportunities()[0]
    eid, guid = seeded["externalOpportunityId"], seeded["marketoGUID"]
    messages = [
        opp_schema(),
        deleted(record("opportunities", {"marketoGUID": guid})),
        role_schema(),
        role(eid, 3),
        opp(eid, stage="again"),
    ]
    run = run_target(config(sb, tmp_path), messages)
    assert [run.status_of(n) for n in (1, 2, 3)] == ["deleted", "created", "created"]
    assert sb.store.role(eid, 3, "Champion") is not None


def test_roles_wait_for_an_opportunity_deleted_and_re_created_in_the_run(
    sb: Sandbox, tmp_path: Path, code: str
) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("X-1")])
    messages = [opp_schema(), role_schema(), opp("X-1", stage="a"), deleted(opp("X-1"))]
    # bs=1: more roles than can be parked, so the first ones are sent (after the delete) before
    # X-1 is re-created; answered "not found", they must be held for it, not reported skipped.
    messages += [role("X-1", lead) for lead in range(3, 9)]
    messages += [opp("X-1", stage="again")]
    # Those early role calls must reach Marketo before the re-create, however busy the machine is
    # (the re-create may be sent while they are in flight: it is another object).
    sb.configure(faults=[Fault(kind="slow", path="/rest/v1/opportunities.json", seconds=0.3)])
    run = run_target(config(sb, tmp_path, batch_size_rows=1), messages)
    assert [run.status_of(n) for n in (1, 2, 9)] == ["updated", "deleted", "created"]
    assert [run.status_of(n) for n in range(3, 9)] == ["created"] * 6
    roles = sorted(r["leadId"] for r in sb.store.roles() if r["externalOpportunityId"] == "X-1")
    assert roles == list(range(3, 9))
    assert sb.stats()["record_errors_by_code"].get(code)  # the early ones were refused once


def test_a_held_role_is_not_overtaken_by_a_later_record_for_it(
    make_sandbox: SandboxFactory, tmp_path: Path, code: str
) -> None:
    # bs=2: roles batches park and overflow, so v1 of Z-1's role goes out before Z-1 arrives and
    # is held; v2 of the same role arrived meanwhile and sat in an open batch.
    sandbox = make_sandbox(
        opportunities=0, leads=60, heavy_leads=0, latency_seconds=0.3, missing_opportunity_code=code
    )
    run_target(config(sandbox, tmp_path), [opp_schema(), opp("F-1")])
    messages = [opp_schema(), role_schema(), role("Z-1", 3, isPrimary=True)]
    messages += [role("F-1", lead) for lead in range(10, 19)]
    messages += [role("Z-1", 3, isPrimary=False), opp("Z-1"), opp("Q-1")]
    run = run_target(config(sandbox, tmp_path, batch_size_rows=2), messages)
    assert (run.status_of(1), run.status_of(11)) == ("created", "updated")
    stored = sandbox.store.role("Z-1", 3, "Champion")
    assert stored is not None
    assert stored["isPrimary"] is False


def test_dry_run_replays_opportunity_deletes_in_input_order_with_their_cascade(
    sb: Sandbox, tmp_path: Path
) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("E-1"), role_schema(), role("E-1", 3)])
    messages = [
        opp_schema(),
        role_schema(),
        role("E-1", 3, isPrimary=False),  # before the delete: updated, then deleted with E-1
        deleted(opp("E-1")),
        role("E-1", 4),  # after the delete: waits for E-1 to be re-created
        opp("E-1", stage="again"),
        role("E-1", 3),  # deleted with E-1 above: created anew
        role("N-1", 5),  # before its opportunity, which is deleted right after being created
        opp("N-1"),
        deleted(opp("N-1")),
    ]
    dry = run_target(config(sb, tmp_path, dry_run=True), messages)
    real = run_target(config(sb, tmp_path), messages)
    predicted = [dry.status_of(n) for n in range(1, 9)]
    assert predicted == [f"would_{real.status_of(n)}".replace("ed", "e") for n in range(1, 9)]
    assert [real.status_of(n) for n in range(1, 9)] == [
        "updated",
        "deleted",
        "created",
        "created",
        "created",
        "created",
        "created",
        "deleted",
    ]


@pytest.mark.parametrize(
    ("batch_size", "other_delete"),
    [(300, False), (1, False), (300, True)],
    ids=["batches-of-300", "batches-of-1", "another-delete-by-guid-after-the-role"],
)
def test_a_role_waits_for_an_opportunity_deleted_by_marketo_guid_and_re_created(
    sb: Sandbox, tmp_path: Path, batch_size: int, other_delete: bool
) -> None:
    guid = sb.store.opportunity("OPP-000002")["marketoGUID"]
    other = sb.store.opportunity("OPP-000003")["marketoGUID"]
    messages = [
        opp_schema(),
        role_schema(),
        opp("OPP-000002", stage="A"),
        record("opportunities", {"marketoGUID": guid, "_sdc_deleted_at": "2026-01-01T00:00:00Z"}),
        role("OPP-000002", 2, "Influencer"),
        *(
            [record("opportunities", {"marketoGUID": other, "_sdc_deleted_at": "2026-01-01T00:00:00Z"})]
            if other_delete
            else []
        ),
        opp("Y-1"),
        opp("OPP-000002", stage="C"),
    ]
    run = run_target(config(sb, tmp_path, batch_size_rows=batch_size), messages)
    assert [run.status_of(n) for n in (1, 2, 3)] == ["updated", "deleted", "created"]
    assert sb.store.role("OPP-000002", 2, "Influencer") is not None


def test_a_rerun_after_a_crash_does_not_write_a_role_its_own_later_delete_removed(
    sb: Sandbox, tmp_path: Path, code: str
) -> None:
    """Clean run: the role is written, then removed with its opportunity. A rerun finds the
    opportunity gone (the crashed run deleted it): the role must not be written after the delete."""
    messages = [
        role_schema(),
        role("OPP-000001", 4, "Decision Maker"),
        opp_schema(),
        deleted(opp("OPP-000001")),
        opp("OPP-000001", stage="New"),
    ]
    settings = config(sb, tmp_path)
    # Calls: 1-2 describes, 3 role sync, 4 opportunity delete, 5 the re-create: refused.
    sb.configure(faults=[Fault(kind="603", calls=[5])])
    crashed = run_target(settings, messages, raise_errors=False)
    assert crashed.error is not None
    sb.configure(faults=[])
    rerun = run_target(settings, messages)
    assert rerun.status_of(1) == "skipped"
    assert rerun.reason_codes(1) == [code]
    assert rerun.status_of(3) == "created"
    assert sb.store.opportunity("OPP-000001") is not None
    assert sb.store.role("OPP-000001", 4, "Decision Maker") is None  # as after a clean run


def test_any_skip_but_a_few_may_mean_the_opportunity_is_missing() -> None:
    def skipped(code: str) -> Outcome:
        return Outcome("skipped", reasons=(Reason(code, "whatever Marketo says"),))

    assert all(may_mean_missing_opportunity(skipped(c)) for c in [*CODES, "1001", "1006"])
    # Already exists, CRM sync, duplicate in the call, body too large: not about the opportunity.
    assert not any(may_mean_missing_opportunity(skipped(c)) for c in ("1005", "1017", "1018", "1036", "413"))
    assert not may_mean_missing_opportunity(Outcome("created"))
