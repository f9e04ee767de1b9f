"""target-marketo-opps against the sandbox over HTTP, in-process (STATE captured from stdout)."""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marketo_api import CrmSyncEnabledError, MarketoObject
from marketo_sandbox import Fault, RecordFault, Sandbox
from target_marketo_opps.records import Item
from target_marketo_opps.target import TargetMarketoOpps, TooManyRejectionsError, UnknownStreamError
from target_marketo_opps.writer import WriteCoordinator
from tests.support.target import (
    SAMPLE,
    deleted,
    opp,
    opp_schema,
    record,
    role,
    role_schema,
    run_target,
    schema,
    sdk_style,
    state,
    store_snapshot,
    target_config,
)

SandboxFactory = Callable[..., Sandbox]


@pytest.fixture
def sb(make_sandbox: SandboxFactory) -> Sandbox:
    return make_sandbox(opportunities=5, leads=60, heavy_leads=0)


def config(sb: Sandbox, tmp_path: Path, **settings: Any) -> dict[str, Any]:
    return target_config(sb, tmp_path, max_calls_per_20s=100, **settings)


def write_calls(sb: Sandbox) -> dict[str, int]:
    return {
        k: v
        for k, v in sb.stats()["calls_by_endpoint"].items()
        if k.startswith("POST") and "identity" not in k and "_method" not in k
    }


# ---- actions x dedupe modes ---------------------------------------------------------------


def test_create_then_update_writes_exact_values(sb: Sandbox, tmp_path: Path) -> None:
    messages = [
        role_schema(),
        role("A-1", 3, "Champion", isPrimary=True, externalCreatedDate="2026-01-05T12:00:00-05:00"),
        opp_schema(),
        opp(
            "A-1",
            amount=1234.5,
            quantity=0.1,
            probability=40,
            closeDate="2026-03-01",
            externalCreatedDate="2026-03-01T10:00:00+02:00",
            isWon=True,
        ),
        state({"n": 1}),
    ]
    first = run_target(config(sb, tmp_path), messages)
    stored = sb.store.opportunity("A-1")
    assert stored is not None
    assert stored["amount"] == "1234.50"
    assert stored["quantity"] == pytest.approx(0.1)
    assert (stored["probability"], stored["closeDate"], stored["isWon"]) == (40, "2026-03-01", True)
    assert stored["externalCreatedDate"] == "2026-03-01T08:00:00Z"
    stored_role = sb.store.role("A-1", 3, "Champion")
    assert stored_role is not None
    assert stored_role["externalCreatedDate"] == "2026-01-05T17:00:00Z"
    assert [r["status"] for r in first.results if r["stream"] == "opportunities"] == ["created"]
    assert first.by_record()[2]["marketoGUID"] == stored["marketoGUID"]
    assert first.by_record()[1]["marketoGUID"] == stored_role["marketoGUID"]
    assert first.states == [{"n": 1}]

    second = run_target(
        config(sb, tmp_path), [opp_schema(), opp("A-1", stage="Won"), role_schema(), role("A-1", 3)]
    )
    assert second.statuses() == {"updated": 2}
    stored = sb.store.opportunity("A-1")
    assert stored is not None
    assert (stored["stage"], stored["amount"]) == ("Won", "1234.50")


def test_create_only_skips_existing_records(sb: Sandbox, tmp_path: Path) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("A-1"), role_schema(), role("A-1", 3)])
    run = run_target(
        config(sb, tmp_path, action="createOnly", max_rejections=0),
        [opp_schema(), opp("A-1", name="Changed"), opp("A-2"), role_schema(), role("A-1", 3), role("A-2", 4)],
    )
    assert [run.status_of(n) for n in (1, 2, 3, 4)] == ["skipped", "created", "skipped", "created"]
    assert run.reason_codes(1) == ["1017"]
    assert run.reason_codes(3) == ["1017"]
    stored = sb.store.opportunity("A-1")
    assert stored is not None
    assert stored["name"] == "Opportunity A-1"


def test_update_only_by_dedupe_fields(sb: Sandbox, tmp_path: Path) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("A-1")])
    run = run_target(
        config(sb, tmp_path, action="updateOnly"),
        [opp_schema(), opp("A-1", stage="Won"), opp("A-404"), role_schema(), role("A-1", 3)],
    )
    assert [run.status_of(n) for n in (1, 2, 3)] == ["updated", "skipped", "skipped"]
    assert run.reason_codes(2) == ["1004"]
    assert run.reason_codes(3) == ["1004"]
    assert sb.store.opportunity("A-404") is None
    assert sb.store.role("A-1", 3, "Champion") is None


def test_update_only_by_id_field(sb: Sandbox, tmp_path: Path) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("A-1"), role_schema(), role("A-1", 3)])
    opp_guid = sb.store.opportunity("A-1")["marketoGUID"]  # type: ignore[index]
    role_guid = sb.store.role("A-1", 3, "Champion")["marketoGUID"]  # type: ignore[index]
    run = run_target(
        config(sb, tmp_path, action="updateOnly", dedupe_by="idField"),
        [
            opp_schema(),
            record("opportunities", {"marketoGUID": opp_guid, "stage": "Negotiation"}),
            record("opportunities", {"marketoGUID": "00000000-0000-4000-8000-000000000000", "stage": "x"}),
            record("opportunities", {"externalOpportunityId": "A-1", "stage": "y"}),
            role_schema(),
            record("opportunity_roles", {"marketoGUID": role_guid, "isPrimary": True}),
        ],
    )
    assert [run.status_of(n) for n in (1, 2, 3, 4)] == ["updated", "skipped", "rejected", "updated"]
    assert run.reason_codes(2) == ["1004"]
    assert run.reason_codes(3) == ["missing_key"]
    assert run.by_record()[1]["marketoGUID"] == opp_guid
    assert sb.store.opportunity("A-1")["stage"] == "Negotiation"  # type: ignore[index]
    assert sb.store.role("A-1", 3, "Champion")["isPrimary"] is True  # type: ignore[index]


def test_deletes(sb: Sandbox, tmp_path: Path) -> None:
    setup = [opp_schema(), opp("A-1"), opp("A-2"), opp("A-3"), role_schema()]
    setup += [role("A-3", 3, "Champion"), role("A-3", 4, "Champion"), role("A-3", 5, "Champion")]
    run_target(config(sb, tmp_path), setup)
    a2_guid = sb.store.opportunity("A-2")["marketoGUID"]  # type: ignore[index]
    role_guid = sb.store.role("A-3", 4, "Champion")["marketoGUID"]  # type: ignore[index]
    run = run_target(
        config(sb, tmp_path),
        [
            opp_schema(),
            deleted(record("opportunities", {"externalOpportunityId": "A-1"})),
            deleted(record("opportunities", {"marketoGUID": a2_guid})),
            deleted(record("opportunities", {"externalOpportunityId": "A-404"})),
            role_schema(),
            deleted(role("A-3", 3)),
            deleted(record("opportunity_roles", {"marketoGUID": role_guid})),
            deleted(record("opportunity_roles", {"leadId": 5, "role": "Champion"})),
        ],
    )
    assert [run.status_of(n) for n in range(1, 7)] == [
        "deleted",
        "deleted",
        "skipped",
        "deleted",
        "deleted",
        "rejected",
    ]
    assert run.reason_codes(3) == ["1013"]
    assert run.reason_codes(6) == ["missing_key"]
    assert {r["action"] for r in run.results} == {"delete"}
    assert sb.store.opportunity("A-1") is None
    assert sb.store.opportunity("A-2") is None
    assert sb.store.role("A-3", 3, "Champion") is None
    assert sb.store.role("A-3", 4, "Champion") is None
    assert sb.store.role("A-3", 5, "Champion") is not None
    assert write_calls(sb)["POST /rest/v1/opportunities/delete.json"] == 2  # by key, then by id


# ---- ordering -----------------------------------------------------------------------------


def test_an_update_by_key_then_a_delete_by_marketo_guid_keep_their_order(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # Nothing tells the target that the two records are one opportunity: it must not let the
    # delete overtake the (slowed) update, or the update would re-create the opportunity.
    slow_syncs = Fault(kind="slow", path="/rest/v1/opportunities.json", seconds=0.4)
    sandbox = make_sandbox(opportunities=5, leads=60, heavy_leads=0, faults=[slow_syncs])
    seeded = sandbox.store.opportunities()[0]
    eid, guid = seeded["externalOpportunityId"], seeded["marketoGUID"]
    messages = [
        opp_schema(),
        opp(eid, stage="Renamed"),
        deleted(record("opportunities", {"marketoGUID": guid})),
    ]
    run = run_target(config(sandbox, tmp_path), messages)
    assert [run.status_of(n) for n in (1, 2)] == ["updated", "deleted"]
    assert sandbox.store.opportunity(eid) is None


def test_a_delete_by_key_then_an_update_by_marketo_guid_keep_their_order(sb: Sandbox, tmp_path: Path) -> None:
    seeded = sb.store.opportunities()[0]
    eid, guid = seeded["externalOpportunityId"], seeded["marketoGUID"]
    messages = [
        opp_schema(),
        deleted(record("opportunities", {"externalOpportunityId": eid})),
        record("opportunities", {"marketoGUID": guid, "stage": "Too late"}),
    ]
    run = run_target(config(sb, tmp_path, action="updateOnly", dedupe_by="idField"), messages)
    assert run.status_of(1) == "deleted"
    assert run.status_of(2) == "skipped"  # it was gone by then
    assert sb.store.opportunity(eid) is None


def test_records_with_the_same_key_are_applied_in_input_order(sb: Sandbox, tmp_path: Path) -> None:
    messages = [
        opp_schema(),
        opp("K-1", stage="one"),
        opp("K-1", stage="two"),
        deleted(record("opportunities", {"externalOpportunityId": "K-1"})),
        opp("K-1", stage="three"),
        opp("K-1", stage="four", description="last"),
    ]
    run = run_target(config(sb, tmp_path), messages)
    assert [run.status_of(n) for n in range(1, 6)] == ["created", "updated", "deleted", "created", "updated"]
    stored = sb.store.opportunity("K-1")
    assert stored is not None
    assert (stored["stage"], stored["description"]) == ("four", "last")
    assert "1036" not in sb.stats()["record_errors_by_code"]


def test_stream_objects_routes_other_stream_names(sb: Sandbox, tmp_path: Path) -> None:
    settings = {"stream_objects": {"crm_deals": "opportunity", "deal_contacts": "opportunity_role"}}
    run = run_target(
        config(sb, tmp_path, **settings),
        [
            role_schema("deal_contacts"),
            record("deal_contacts", {"externalOpportunityId": "W-1", "leadId": 7, "role": "Buyer"}),
            opp_schema("crm_deals"),
            record("crm_deals", {"externalOpportunityId": "W-1", "name": "From the warehouse"}),
        ],
    )
    assert run.statuses() == {"created": 2}
    assert {r["stream"] for r in run.results} == {"crm_deals", "deal_contacts"}
    assert sb.store.role("W-1", 7, "Buyer") is not None


def test_streams_removed_by_stream_maps_are_accepted(sb: Sandbox, tmp_path: Path) -> None:
    fields = schema("opportunity_fields", {"name": {"type": "string"}}, ["name"])
    other = schema("companies", {"id": {"type": "integer"}}, ["id"])
    messages = [
        fields,
        record("opportunity_fields", {"name": "amount"}),
        other,
        record("companies", {"id": 1}),
        opp_schema(),
        opp("M-1"),
    ]
    maps = {"opportunity_fields": "__NULL__", "__else__": "__NULL__", "opportunities": {}}
    run = run_target(config(sb, tmp_path, stream_maps=maps), messages)
    assert [(row["stream"], row["status"]) for row in run.results] == [("opportunities", "created")]


def test_an_unknown_stream_stops_the_run_clearly(sb: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(UnknownStreamError, match="stream_objects") as info:
        run_target(config(sb, tmp_path), [schema("companies", {"id": {"type": "integer"}}, ["id"])])
    assert "'companies'" in str(info.value)


# ---- rejections and results ---------------------------------------------------------------


def test_each_rejection_reason_is_reported_and_the_others_are_written(sb: Sandbox, tmp_path: Path) -> None:
    loose = schema(
        "opportunities",
        {
            "externalOpportunityId": {"type": ["string", "null"]},
            "name": {"type": ["string", "null"]},
            "description": {"type": ["string", "null"]},
            "amount": {"type": ["number", "null"]},
            "closeDate": {"type": ["string", "null"]},
            "crm_owner": {"type": ["string", "null"]},
        },
        ["externalOpportunityId"],
    )
    messages = [
        loose,
        record("opportunities", {"externalOpportunityId": "R-0", "name": "fine", "crm_owner": "x"}),
        record("opportunities", {"externalOpportunityId": "R-1", "name": "n", "amount": "lots"}),
        record("opportunities", {"name": "no key"}),
        record("opportunities", {"externalOpportunityId": "R-3", "name": None}),
        record("opportunities", {"externalOpportunityId": "R-4", "name": "n" * 300}),
        record("opportunities", {"externalOpportunityId": "R-5", "name": "n", "closeDate": "next week"}),
        record("opportunities", {"externalOpportunityId": "R-6", "name": "n", "description": "d" * 1500}),
        record("opportunities", {"externalOpportunityId": "R-7", "name": "fine too"}),
    ]
    run = run_target(config(sb, tmp_path, max_body_bytes=1024), messages)
    expected = {
        2: ("invalid_record", "field 'amount' must be number or null"),
        3: ("missing_key", "'externalOpportunityId' is missing"),
        4: ("name_required", "field 'name' is null"),
        5: ("too_long", "field 'name' is 300 characters long; Marketo allows 255"),
        6: ("invalid_value", "field 'closeDate' (date)"),
        7: ("too_large", "1024 bytes"),
    }
    for number, (code, fragment) in expected.items():
        row = run.by_record()[number]
        assert row["status"] == "rejected"
        assert row["reasons"][0]["code"] == code
        assert fragment in row["reasons"][0]["message"]
    assert run.status_of(1) == "created"
    assert run.status_of(8) == "created"
    assert sb.store.opportunity("R-1") is None
    assert "crm_owner" not in sb.store.opportunity("R-0")  # type: ignore[operator]


def test_the_sample_file_gives_one_result_line_per_record(sb: Sandbox, tmp_path: Path) -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    record_count = sum(1 for line in text.splitlines() if json.loads(line)["type"] == "RECORD")
    run = run_target(config(sb, tmp_path, max_rejections=None), text)
    assert sorted(row["record"] for row in run.results) == list(range(1, record_count + 1))
    counts = collections.Counter((row["stream"], row["status"]) for row in run.results)
    assert counts == {
        ("opportunities", "created"): 20,
        ("opportunities", "rejected"): 3,
        ("opportunities", "deleted"): 1,
        ("opportunity_roles", "created"): 50,
        ("opportunity_roles", "rejected"): 1,
        ("opportunity_roles", "skipped"): 2,
        ("opportunity_roles", "deleted"): 1,
    }
    assert sb.store.opportunity("DEMO-0001") is not None
    assert sb.store.opportunity("DEMO-0019") is None
    assert run.states[-1] == {"bookmarks": {"opportunities": {"last_id": "DEMO-0023"}}}


def test_a_second_run_appends_to_the_results_file(sb: Sandbox, tmp_path: Path) -> None:
    settings = config(sb, tmp_path)
    first = run_target(settings, [opp_schema(), opp("R-1"), opp("R-2", name=None)])
    second = run_target(settings, [opp_schema(), opp("R-1", stage="again")])
    lines = [json.loads(line) for line in first.results_path.read_text(encoding="utf-8").splitlines()]
    assert first.target.results.run_id != second.target.results.run_id
    # Each run's lines together (in the order outcomes were known): the first run's are kept.
    assert [(row["run"], row["record"], row["status"]) for row in lines] == [
        (first.target.results.run_id, 2, "rejected"),
        (first.target.results.run_id, 1, "created"),
        (second.target.results.run_id, 1, "updated"),
    ]
    # A run's summary counts that run's records only.
    assert second.target.results.summary_lines()[0] == "Results for stream 'opportunities': updated 1"


def test_state_never_runs_ahead_of_the_results_file(sb: Sandbox, tmp_path: Path) -> None:
    messages = sdk_style(16, prefix="S")
    positions: list[int] = []  # records before each STATE
    seen = 0
    for message in messages:
        if message["type"] == "RECORD":
            seen += 1
        elif message["type"] == "STATE":
            positions.append(seen)
    run = run_target(config(sb, tmp_path, batch_size_rows=5, max_concurrent_requests=3), messages)
    assert run.states, "no STATE emitted"
    order = [m["value"] for m in messages if m["type"] == "STATE"]
    indices = [order.index(s) for s in run.states]
    assert indices == sorted(indices)
    assert run.states[-1] == order[-1]
    for emitted, done in run.state_snapshots:
        before = positions[order.index(emitted)]
        assert set(range(1, before + 1)) <= done


def test_too_many_rejections_fail_the_run_after_everything_is_written(sb: Sandbox, tmp_path: Path) -> None:
    messages = [opp_schema(), opp("T-1"), opp("T-2", name=None), opp("T-3"), state({"done": True})]
    run = run_target(config(sb, tmp_path, max_rejections=0), messages, raise_errors=False)
    assert isinstance(run.error, TooManyRejectionsError)
    assert "1 records were rejected or skipped" in str(run.error)
    assert [run.status_of(n) for n in (1, 2, 3)] == ["created", "rejected", "created"]
    assert run.states == [{"done": True}]
    tolerant = run_target(config(sb, tmp_path, max_rejections=1), messages)
    assert tolerant.error is None


# ---- dry run ------------------------------------------------------------------------------


def test_dry_run_reports_what_would_happen_without_writing(sb: Sandbox, tmp_path: Path) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("E-1"), role_schema(), role("E-1", 3)])
    before = store_snapshot(sb)
    sb.reset_stats()
    messages = [
        role_schema(),
        role("N-2", 4),
        role("NOPE", 5),
        role("E-1", 3, isPrimary=False),
        opp_schema(),
        opp("E-1", stage="x"),
        opp("N-2"),
        opp("N-2", stage="again"),
        deleted(record("opportunities", {"externalOpportunityId": "E-1"})),
        deleted(record("opportunities", {"externalOpportunityId": "N-404"})),
        opp("N-3", name=None),
        state({"dry": 1}),
    ]
    run = run_target(config(sb, tmp_path, dry_run=True), messages)
    assert [run.status_of(n) for n in range(1, 10)] == [
        "would_create",
        "would_skip",
        "would_update",
        "would_update",
        "would_create",
        "would_update",
        "would_delete",
        "would_skip",
        "rejected",
    ]
    assert run.reason_codes(2) == ["1004"]
    assert run.reason_codes(8) == ["1013"]
    assert run.by_record()[4]["marketoGUID"] == sb.store.opportunity("E-1")["marketoGUID"]  # type: ignore[index]
    assert store_snapshot(sb) == before
    assert write_calls(sb) == {}
    assert run.states == [{"dry": 1}]


def test_dry_run_sees_a_delete_by_marketo_guid_under_the_dedupe_key(sb: Sandbox, tmp_path: Path) -> None:
    seeded = sb.store.opportunities()[0]
    eid, guid = seeded["externalOpportunityId"], seeded["marketoGUID"]
    messages = [
        opp_schema(),
        deleted(record("opportunities", {"marketoGUID": guid})),
        deleted(record("opportunities", {"marketoGUID": "no-such-guid,with-a-comma"})),
        opp(eid),
    ]
    run = run_target(config(sb, tmp_path, dry_run=True), messages)
    assert [run.status_of(n) for n in (1, 2, 3)] == ["would_delete", "would_skip", "would_create"]


def test_dry_run_looks_up_300_keys_per_call(sb: Sandbox, tmp_path: Path) -> None:
    messages = [opp_schema(), *[opp(f"Q-{n:04d}") for n in range(650)]]
    sb.reset_stats()
    run = run_target(config(sb, tmp_path, dry_run=True), messages)
    assert run.statuses() == {"would_create": 650}
    queries = sum(v for k, v in sb.stats()["calls_by_endpoint"].items() if "opportunities.json" in k)
    assert queries == 3


def test_dry_run_create_only_and_update_only(sb: Sandbox, tmp_path: Path) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("E-1")])
    messages = [opp_schema(), opp("E-1"), opp("N-1")]
    create_only = run_target(config(sb, tmp_path, dry_run=True, action="createOnly"), messages)
    assert [create_only.status_of(n) for n in (1, 2)] == ["would_skip", "would_create"]
    update_only = run_target(config(sb, tmp_path, dry_run=True, action="updateOnly"), messages)
    assert [update_only.status_of(n) for n in (1, 2)] == ["would_update", "would_skip"]


# ---- CRM sync -----------------------------------------------------------------------------


@pytest.mark.parametrize("roles_first", [True, False], ids=["roles-api-refused", "writes-skipped-1018"])
def test_crm_sync_stops_the_run_with_one_clear_message(
    make_sandbox: SandboxFactory, tmp_path: Path, roles_first: bool
) -> None:
    crm = make_sandbox(opportunities=5, leads=60, heavy_leads=0, crm_sync=True)
    before = store_snapshot(crm)
    messages = [opp_schema(), opp("C-1"), opp("C-2"), state({"crm": 1})]
    if roles_first:
        messages = [role_schema(), role("C-1", 3), *messages]
    run = run_target(config(crm, tmp_path), messages, raise_errors=False)
    assert isinstance(run.error, CrmSyncEnabledError)
    assert "CRM sync makes Opportunities and Opportunity Roles read-only in Marketo" in str(run.error)
    assert "No record was written" in str(run.error)
    assert run.states == []
    assert {row["status"] for row in run.results} <= {"skipped"}
    assert all(row["reasons"][0]["code"] == "1018" for row in run.results)
    assert len(run.results) == (0 if roles_first else 2)
    assert store_snapshot(crm) == before


# ---- request size, concurrency and faults -------------------------------------------------


def test_batches_are_cut_below_the_body_limit(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    small = make_sandbox(opportunities=5, leads=60, heavy_leads=0, max_body_bytes=8000)
    messages = [opp_schema(), *[opp(f"L-{n}", description=f"{n:03d}" + "é" * 130) for n in range(40)]]
    run = run_target(config(small, tmp_path, max_body_bytes=8000), messages)
    assert run.statuses() == {"created": 40}
    stats = small.stats()
    assert "413" not in stats["http_status"]
    # about 830 bytes per record (each é is sent as \u00e9): 9 per call, so at least 5 calls
    assert stats["calls_by_endpoint"]["POST /rest/v1/opportunities.json"] >= 5


def test_a_413_from_marketo_halves_the_batch(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    small = make_sandbox(opportunities=5, leads=60, heavy_leads=0, max_body_bytes=8000)
    messages = [opp_schema(), *[opp(f"H-{n}", description="x" * 700) for n in range(30)]]
    run = run_target(config(small, tmp_path), messages)  # the target believes in 1 MB
    assert run.statuses() == {"created": 30}
    assert small.stats()["http_status"]["413"] >= 1


@pytest.mark.parametrize("level", ["response", "record"])
def test_an_unknown_sales_person_skips_only_its_record(
    make_sandbox: SandboxFactory, tmp_path: Path, level: str
) -> None:
    checked = make_sandbox(opportunities=5, leads=60, heavy_leads=0, sales_person_check=level)
    known = checked.store.sales_persons()[0]
    messages = [
        opp_schema(),
        *[opp(f"S-{n}", externalSalesPersonId=known) for n in range(9)],
        opp("S-BAD", externalSalesPersonId="NO-SUCH-PERSON"),
    ]
    run = run_target(config(checked, tmp_path, max_rejections=None), messages)
    assert run.statuses() == {"created": 9, "skipped": 1}
    assert run.status_of(10) == "skipped"
    assert run.reason_codes(10) == ["718"]
    assert checked.store.opportunity("S-BAD") is None
    assert all(checked.store.opportunity(f"S-{n}") is not None for n in range(9))


def test_batches_run_concurrently_within_the_limit(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    slow = make_sandbox(opportunities=5, leads=60, heavy_leads=0, latency_seconds=0.05)
    messages = [opp_schema(), *[opp(f"C-{n}") for n in range(40)]]
    run = run_target(config(slow, tmp_path, batch_size_rows=4, max_concurrent_requests=3), messages)
    assert run.statuses() == {"created": 40}
    assert 2 <= slow.stats()["max_concurrency_seen"] <= 3


@pytest.mark.parametrize("kind", ["606", "615", "713", "http502", "drop"])
def test_call_level_faults_are_retried(make_sandbox: SandboxFactory, tmp_path: Path, kind: str) -> None:
    faulty = make_sandbox(opportunities=5, leads=60, heavy_leads=0, faults=[Fault(kind=kind, calls=[2, 4])])
    messages = [opp_schema(), *[opp(f"F-{n}") for n in range(6)], role_schema(), role("F-1", 3)]
    run = run_target(config(faulty, tmp_path, batch_size_rows=3, rate_window_seconds=1), messages)
    assert run.statuses() == {"created": 7}
    assert faulty.stats()["faults_injected"] == {kind: 2}


def test_a_lost_answer_on_create_only_is_confirmed_by_lookup(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # call 1 describes opportunities, call 2 is the sync: applied, then answered with 604
    faulty = make_sandbox(
        opportunities=5, leads=60, heavy_leads=0, faults=[Fault(kind="604", calls=[2], after_apply=True)]
    )
    seeded = faulty.store.opportunities()[0]["externalOpportunityId"]  # created in 2024
    run = run_target(config(faulty, tmp_path, action="createOnly"), [opp_schema(), opp(seeded), opp("U-1")])
    assert faulty.stats()["faults_injected"] == {"604": 1}
    assert run.status_of(1) == "skipped"  # existed before this run
    assert run.reason_codes(1) == ["1017"]
    assert run.status_of(2) == "created"
    assert "createdAt" in (run.by_record()[2]["note"] or "")
    assert run.by_record()[2]["marketoGUID"] == faulty.store.opportunity("U-1")["marketoGUID"]  # type: ignore[index]


def test_a_lost_answer_on_delete_reports_the_delete(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    faulty = make_sandbox(opportunities=5, leads=60, heavy_leads=0)
    run_target(config(faulty, tmp_path), [opp_schema(), opp("V-1")])
    faulty.configure(faults=[Fault(kind="http502", calls=[2], after_apply=True)])
    faulty.reset_stats()
    run = run_target(config(faulty, tmp_path), [opp_schema(), deleted(opp("V-1"))])
    assert run.status_of(1) == "deleted"
    assert run.by_record()[1]["note"]
    assert faulty.store.opportunity("V-1") is None


class NoWaitTarget(TargetMarketoOpps):
    """The target as shipped, minus the 2/5/15 s waits between transient retry rounds."""

    transient_retry_delays = (0.0, 0.0, 0.0)


def test_transient_record_reasons_are_retried_in_smaller_batches(sb: Sandbox, tmp_path: Path) -> None:
    # Marketo skips single records with 1014 ("Failed to create Object") a few times each;
    # X-9 keeps failing past every retry round.
    sb.configure(
        record_faults=[
            RecordFault(code="1014", keys=["X-1"], times=1),
            RecordFault(code="1014", keys=["X-2", "X-3"], times=2),
            RecordFault(code="1014", keys=["X-9"], times=None),
        ]
    )
    sb.reset_stats()
    messages = [opp_schema(), *[opp(f"X-{n}") for n in range(10)]]
    run = run_target(config(sb, tmp_path), messages, target_class=NoWaitTarget)
    assert [run.status_of(n) for n in range(1, 11)] == ["created"] * 9 + ["skipped"]
    assert run.reason_codes(10) == ["1014"]
    # 10 at first; then 4 pending in 2 calls of 2; then 3 pending in 4 calls of 1; then 1
    stats = sb.stats()
    assert stats["write_batch_sizes"] == {"POST /rest/v1/opportunities.json": [10, 2, 2, 1, 1, 1, 1]}
    assert stats["record_faults_injected"] == {"1014": 1 + 2 + 2 + 4}
    assert stats["record_errors_by_code"] == {"1014": 9}
    for n in range(9):
        stored = sb.store.opportunity(f"X-{n}")
        assert stored is not None
        assert run.by_record()[n + 1]["marketoGUID"] == stored["marketoGUID"]
    assert sb.store.opportunity("X-9") is None


def test_transient_role_reasons_are_retried(sb: Sandbox, tmp_path: Path) -> None:
    sb.configure(record_faults=[RecordFault(code="1022", keys=["Y-1"], times=1, object="opportunity_role")])
    sb.reset_stats()
    messages = [
        opp_schema(),
        opp("Y-1"),
        opp("Y-2"),
        role_schema(),
        role("Y-1", 3),
        role("Y-1", 4),
        role("Y-2", 3),
    ]
    run = run_target(config(sb, tmp_path), messages, target_class=NoWaitTarget)
    assert run.statuses() == {"created": 5}
    stats = sb.stats()
    # the opportunity Y-1 is not affected; its two roles are skipped once, then sent one per call
    assert stats["write_batch_sizes"] == {
        "POST /rest/v1/opportunities.json": [2],
        "POST /rest/v1/opportunities/roles.json": [3, 1, 1],
    }
    assert stats["record_faults_injected"] == {"1022": 2}
    for n, (eid, lead) in enumerate([("Y-1", 3), ("Y-1", 4), ("Y-2", 3)], start=3):
        stored = sb.store.role(eid, lead, "Champion")
        assert stored is not None
        assert run.by_record()[n]["marketoGUID"] == stored["marketoGUID"]


def test_dry_run_looks_up_keys_that_contain_a_comma(sb: Sandbox, tmp_path: Path) -> None:
    # filterValues cannot carry a comma; such keys go through the compound (JSON input) query
    run_target(config(sb, tmp_path), [opp_schema(), opp("A,1")])
    run = run_target(config(sb, tmp_path, dry_run=True), [opp_schema(), opp("A,1"), opp("B,2")])
    assert [run.status_of(n) for n in (1, 2)] == ["would_update", "would_create"]


# ---- regressions (review 2) -------------------------------------------------------------------


def test_a_stuck_checkpoint_raises_instead_of_spinning(sb: Sandbox, tmp_path: Path) -> None:
    target = TargetMarketoOpps(config=config(sb, tmp_path))
    coordinator = target.coordinator
    assert isinstance(coordinator, WriteCoordinator)
    # A held role whose release rule never lets it go, even at the end of input: an internal
    # inconsistency must end the run with a clear error, not a silent 100% CPU loop.
    item = Item(
        seq=1,
        stream="opportunity_roles",
        obj=MarketoObject.OPPORTUNITY_ROLE,
        op="sync",
        action="createOrUpdate",
        by="dedupeFields",
        key={},
        conflict_keys=(("r", "dedupe", 1),),
    )
    coordinator._unresolved[1] = item
    coordinator._hold(item)
    coordinator._release_decision = lambda item, final: "keep"  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            coordinator.checkpoint(final=True)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the checkpoint spins"
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "made no progress" in str(errors[0])
    coordinator.close()


def test_dry_run_with_roles_only(sb: Sandbox, tmp_path: Path) -> None:
    run_target(config(sb, tmp_path), [opp_schema(), opp("D-1")])
    run = run_target(config(sb, tmp_path, dry_run=True), [role_schema(), role("D-1", 3), role("NOPE", 4)])
    assert [run.status_of(n) for n in (1, 2)] == ["would_create", "would_skip"]


def test_dry_run_describes_each_object_once_when_roles_come_first(sb: Sandbox, tmp_path: Path) -> None:
    sb.reset_stats()
    # Batches of one: the role is looked up (describing the opportunity) before the opportunity arrives.
    messages = [role_schema(), role("D-2", 3), role("D-2", 4), opp_schema(), opp("D-2")]
    run = run_target(config(sb, tmp_path, dry_run=True, batch_size_rows=1), messages)
    assert [run.status_of(n) for n in (1, 2, 3)] == ["would_create"] * 3
    calls = sb.stats()["calls_by_endpoint"]
    assert calls["GET /rest/v1/opportunities/describe.json"] == 1
    assert calls["GET /rest/v1/opportunities/roles/describe.json"] == 1


def test_an_integral_decimal_passes_an_integer_field(sb: Sandbox, tmp_path: Path) -> None:
    text = "\n".join(
        [
            json.dumps(opp_schema()),
            '{"type": "RECORD", "stream": "opportunities", "record": '
            '{"externalOpportunityId": "I-1", "name": "I", "probability": 40.0}}',
            '{"type": "RECORD", "stream": "opportunities", "record": '
            '{"externalOpportunityId": "I-2", "name": "I", "probability": 40.5}}',
        ]
    )
    run = run_target(config(sb, tmp_path), text + "\n")
    assert [run.status_of(n) for n in (1, 2)] == ["created", "rejected"]
    stored = sb.store.opportunity("I-1")
    assert stored is not None
    assert stored["probability"] == 40


# ---- found in review (2026-12-02) ---------------------------------------------------------


def test_create_only_twice_with_a_lost_answer_keeps_the_second_skip(sb: Sandbox, tmp_path: Path) -> None:
    """The lost-answer check must not credit a record that an earlier batch of the run created."""
    messages = [opp_schema(), opp("D-1"), opp("D-1", name="again")]
    sb.configure(faults=[Fault(kind="604", calls=[3], after_apply=True)])  # 1 describe, 2 and 3 syncs
    run = run_target(config(sb, tmp_path, action="createOnly"), messages)
    assert sb.stats()["faults_injected"] == {"604": 1}
    assert run.status_of(1) == "created"
    assert run.status_of(2) == "skipped"
    assert run.reason_codes(2) == ["1017"]
    stored = sb.store.opportunity("D-1")
    assert stored is not None
    assert stored["name"] == "Opportunity D-1"


def test_a_dry_run_on_a_crm_synced_instance_stops_like_a_real_run(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    crm = make_sandbox(opportunities=5, leads=60, heavy_leads=0, crm_sync=True)
    messages = [opp_schema(), opp("OPP-000001", stage="Won"), opp("N-1")]
    run = run_target(config(crm, tmp_path, dry_run=True), messages, raise_errors=False)
    assert isinstance(run.error, CrmSyncEnabledError)
    assert "CRM sync makes Opportunities and Opportunity Roles read-only" in str(run.error)
    assert not [row for row in run.results if row["status"].startswith("would_")]


def test_a_dry_run_forgets_the_marketo_guid_of_a_deleted_record(sb: Sandbox, tmp_path: Path) -> None:
    guid = sb.store.opportunity("OPP-000001")["marketoGUID"]
    messages = [
        opp_schema(),
        deleted(opp("OPP-000001")),
        opp("OPP-000001", stage="B"),  # re-created: a new marketoGUID
        record("opportunities", {"marketoGUID": guid, "_sdc_deleted_at": "2026-01-01T00:00:00Z"}),
        opp("OPP-000001", stage="C"),
    ]
    dry = run_target(config(sb, tmp_path, dry_run=True), messages)
    real = run_target(config(sb, tmp_path), messages)
    predicted = {"would_create": "created", "would_update": "updated", "would_delete": "deleted"}
    predicted["would_skip"] = "skipped"
    for number in range(1, 5):
        assert predicted[dry.status_of(number)] == real.status_of(number), number
    assert [real.status_of(n) for n in range(1, 5)] == ["deleted", "created", "skipped", "updated"]


def test_a_dry_run_sees_the_cascade_of_a_delete_by_marketo_guid(sb: Sandbox, tmp_path: Path) -> None:
    guid = sb.store.opportunity("OPP-000001")["marketoGUID"]
    kept = next(r for r in sb.store.roles() if r["externalOpportunityId"] == "OPP-000001")
    messages = [
        opp_schema(),
        role_schema(),
        record("opportunities", {"marketoGUID": guid, "_sdc_deleted_at": "2026-01-01T00:00:00Z"}),
        deleted(role("OPP-000001", kept["leadId"], kept["role"])),  # went with its opportunity
    ]
    dry = run_target(config(sb, tmp_path, dry_run=True), messages)
    real = run_target(config(sb, tmp_path), messages)
    assert [real.status_of(1), real.status_of(2)] == ["deleted", "skipped"]
    assert [dry.status_of(1), dry.status_of(2)] == ["would_delete", "would_skip"]
