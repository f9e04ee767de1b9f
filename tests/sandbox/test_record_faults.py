"""Faults injected into single records of a write: skipped n times then applied, codes, objects, syntax."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from marketo_sandbox import RECORD_FAULT_MESSAGES, RecordFault, Sandbox, SandboxConfig
from marketo_sandbox.cli import build_parser, config_from_args
from tests.support.sandbox_calls import OPP, OPP_DELETE, ROLES, ROLES_DELETE, Api, MakeSandbox, reasons


def skipped_with(seq: int, code: str) -> dict[str, Any]:
    message = RECORD_FAULT_MESSAGES[code]
    return {"seq": seq, "status": "skipped", "reasons": [{"code": code, "message": message}]}


def statuses(body: dict[str, Any]) -> list[str]:
    assert body["success"] is True, body
    return [r["status"] for r in body["result"]]


def test_record_fault_skips_a_record_n_times_then_applies_it(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(rate_limit=None, record_faults=[RecordFault(code="1014", keys=["RF-1"], times=2)])
    api = Api(sb)
    batch = [{"externalOpportunityId": f"RF-{n}", "name": f"Record fault {n}"} for n in (1, 2, 3)]
    first = api.post(OPP, {"input": batch})
    assert first["result"][0] == skipped_with(0, "1014")
    assert first["result"][0]["reasons"][0]["message"] == "Failed to create Object"
    assert statuses(first) == ["skipped", "created", "created"]  # the rest of the call is applied
    assert sb.store.opportunity("RF-1") is None
    assert sb.store.opportunity("RF-2") is not None
    assert sb.store.opportunity("RF-3") is not None
    # The same record again, alone and then with others: skipped a second time, then applied.
    assert api.post(OPP, {"input": batch[:1]})["result"] == [skipped_with(0, "1014")]
    assert sb.store.opportunity("RF-1") is None
    third = api.post(OPP, {"input": [batch[1], batch[0]]})
    assert statuses(third) == ["updated", "created"]
    stored = sb.store.opportunity("RF-1")
    assert stored is not None
    assert third["result"][1]["marketoGUID"] == stored["marketoGUID"]
    assert stored["name"] == "Record fault 1"
    assert statuses(api.post(OPP, {"input": batch[:1]})) == ["updated"]
    # A skipped record is not processed at all: a later duplicate of it in the call is applied.
    sb.configure(record_faults=[RecordFault(code="1019", keys=["RF-4"])])
    dup = api.post(OPP, {"input": [{"externalOpportunityId": "RF-4", "name": "a"}] * 2})
    assert dup["result"] == [skipped_with(0, "1019"), {**dup["result"][1], "status": "created"}]
    stats = sb.stats()
    assert stats["record_faults_injected"] == {"1014": 2, "1019": 1}
    assert stats["record_errors_by_code"] == {"1014": 2, "1019": 1}
    assert stats["write_batch_sizes"] == {"POST " + OPP: [3, 1, 2, 1, 2]}
    sb.reset_stats()
    assert sb.stats()["write_batch_sizes"] == {}
    assert sb.stats()["record_faults_injected"] == {}


def test_record_fault_codes_objects_roles_and_deletes(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(rate_limit=None)
    api = Api(sb)
    lead_a, lead_b = sb.store.lead_ids()[:2]
    for n, code in enumerate(sorted(RECORD_FAULT_MESSAGES)):
        sb.configure(record_faults=[RecordFault(code=code, keys=[f"CODE-{n}"])])
        body = api.post(OPP, {"input": [{"externalOpportunityId": f"CODE-{n}", "name": "x"}]})
        assert body["result"] == [skipped_with(0, code)]
    assert RECORD_FAULT_MESSAGES == {
        "1014": "Failed to create Object",
        "1019": "Import in progress",
        "1022": "Object in use",
        "1029": "Too many jobs in queue",
    }

    # object="opportunity_role" leaves opportunities alone; times=None skips forever.
    # Roles match by externalOpportunityId; times counts per role (opportunity, lead, role).
    sb.configure(
        record_faults=[
            RecordFault(code="1022", keys=["OPP-000001"], times=None, object="opportunity_role"),
            RecordFault(code="1019", keys=["OPP-000002"], times=1, object="opportunity_role"),
        ]
    )
    opp = api.post(OPP, {"input": [{"externalOpportunityId": "OPP-000001", "name": "Renamed"}]})
    assert statuses(opp) == ["updated"]
    roles = [
        {"externalOpportunityId": "OPP-000001", "leadId": lead_a, "role": "Auditor"},
        {"externalOpportunityId": "OPP-000002", "leadId": lead_a, "role": "Auditor"},
        {"externalOpportunityId": "OPP-000002", "leadId": lead_b, "role": "Auditor"},
        {"externalOpportunityId": "OPP-000003", "leadId": lead_a, "role": "Auditor"},
    ]
    first = api.post(ROLES, {"input": roles})
    assert first["result"][:3] == [skipped_with(0, "1022"), skipped_with(1, "1019"), skipped_with(2, "1019")]
    assert statuses(first)[3] == "created"
    for _ in range(3):
        again = api.post(ROLES, {"input": roles[:3]})
        assert again["result"][0] == skipped_with(0, "1022")
    assert statuses(again)[1:] == ["updated", "updated"]  # created by the second call
    assert sb.store.role("OPP-000001", lead_a, "Auditor") is None
    assert sb.store.role("OPP-000002", lead_b, "Auditor") is not None

    # Deletes: by dedupe key for opportunities, by marketoGUID (idField) for roles.
    role_guid = sb.store.role("OPP-000003", lead_a, "Auditor")["marketoGUID"]  # type: ignore[index]
    sb.configure(record_faults=[RecordFault(code="1029", keys=["OPP-000004", role_guid], times=1)])
    gone = api.post(ROLES_DELETE, {"deleteBy": "idField", "input": [{"marketoGUID": role_guid}]})
    assert gone["result"] == [skipped_with(0, "1029")]
    assert statuses(
        api.post(ROLES_DELETE, {"deleteBy": "idField", "input": [{"marketoGUID": role_guid}]})
    ) == ["deleted"]
    body = api.post(
        OPP_DELETE,
        {"input": [{"externalOpportunityId": "OPP-000004"}, {"externalOpportunityId": "OPP-000005"}]},
    )
    assert body["result"][0] == skipped_with(0, "1029")
    assert statuses(body) == ["skipped", "deleted"]
    assert sb.store.opportunity("OPP-000004") is not None
    assert statuses(api.post(OPP_DELETE, {"input": [{"externalOpportunityId": "OPP-000004"}]})) == ["deleted"]
    assert sb.store.opportunity("OPP-000004") is None

    # Records without a usable key get the normal validation answer, not the fault.
    sb.configure(record_faults=[RecordFault(code="1014", times=None)])
    assert reasons(api.post(OPP, {"input": [{"name": "no key"}, "not an object"]})) == ["1003", "1003"]
    stats = sb.stats()
    assert stats["record_faults_injected"] == {"1014": 1, "1019": 3, "1022": 5, "1029": 3}
    assert stats["record_errors_by_code"]["1022"] == 5
    sizes = stats["write_batch_sizes"]
    assert sizes["POST " + ROLES] == [4, 3, 3, 3]
    assert sizes["POST " + ROLES_DELETE] == [1, 1]
    assert sizes["POST " + OPP_DELETE] == [2, 1]


def test_record_faults_configured_at_runtime(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(rate_limit=None)
    api = Api(sb)
    base = sb.base_url
    assert statuses(api.post(OPP, {"input": [{"externalOpportunityId": "RT-1", "name": "x"}]})) == ["created"]
    # Over HTTP, as JSON objects (defaults: code 1014, times 1, every record and object).
    r = requests.post(
        base + "/_sandbox/config",
        json={"record_faults": [{"keys": ["RT-1"], "times": 2}, {"code": "1022", "keys": ["RT-2"]}]},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["record_faults"] == [
        {"code": "1014", "keys": ["RT-1"], "times": 2, "rate": None, "object": None},
        {"code": "1022", "keys": ["RT-2"], "times": 1, "rate": None, "object": None},
    ]
    assert sb.config.record_faults == [
        RecordFault(code="1014", keys=["RT-1"], times=2),
        RecordFault(code="1022", keys=["RT-2"]),
    ]
    assert (
        requests.get(base + "/_sandbox/config", timeout=10).json()["record_faults"]
        == r.json()["record_faults"]
    )
    batch = [{"externalOpportunityId": f"RT-{n}", "name": "y"} for n in (1, 2)]
    assert api.post(OPP, {"input": batch})["result"] == [skipped_with(0, "1014"), skipped_with(1, "1022")]
    assert statuses(api.post(OPP, {"input": batch})) == ["skipped", "created"]
    # reset_stats() restarts the per-record counts, like the call numbering of Fault.calls.
    sb.reset_stats()
    assert api.post(OPP, {"input": batch})["result"][0] == skipped_with(0, "1014")
    # A later fault for the same record applies once an earlier one has used up its times.
    sb.configure(record_faults=[RecordFault(keys=["RT-1"]), RecordFault(code="1029", keys=["RT-1"], times=2)])
    codes = [reasons(api.post(OPP, {"input": batch[:1]}))[0] for _ in range(4)]
    assert codes == ["1014", "1029", "1029", None]
    # rate: seeded from cfg.seed, so the same picks after reset_stats(); keys=None matches all.
    sb.configure(record_faults=[RecordFault(code="1019", rate=0.5, times=None)])
    many = [{"externalOpportunityId": f"RATE-{n}", "name": "z"} for n in range(40)]

    def picks() -> list[str | None]:
        return reasons(api.post(OPP, {"input": many}))

    first = picks()
    assert 5 < first.count("1019") < 35
    assert set(first) == {"1019", None}
    sb.reset_stats()
    assert picks() == first
    # Invalid record faults are refused, over HTTP and in Python.
    for bad in (
        {"record_faults": [{"code": "601"}]},
        {"record_faults": [{"keys": []}]},
        {"record_faults": [{"times": 0}]},
        {"record_faults": [{"rate": 2}]},
        {"record_faults": [{"object": "lead"}]},
        {"record_faults": [{"nope": 1}]},
        {"record_faults": "1014"},
    ):
        assert requests.post(base + "/_sandbox/config", json=bad, timeout=10).status_code == 400, bad
    with pytest.raises(ValueError, match="unknown record fault code"):
        sb.configure(record_faults=[RecordFault(code="1004")])
    # Cleared: everything goes through; in CRM sync mode 1018 wins over any record fault.
    sb.configure(record_faults=[])
    assert set(reasons(api.post(OPP, {"input": many}))) == {None}
    sb.configure(record_faults=[RecordFault(times=None)], crm_sync=True)
    assert reasons(api.post(OPP, {"input": batch})) == ["1018", "1018"]


def test_record_fault_cli_syntax() -> None:
    parse = RecordFault.parse
    assert parse("1014") == RecordFault(code="1014")
    assert parse("1014@OPP-1,OPP-2x2") == RecordFault(code="1014", keys=["OPP-1", "OPP-2"], times=2)
    assert parse("1022@OPP-1x*") == RecordFault(code="1022", keys=["OPP-1"], times=None)
    assert parse("1029:0.25") == RecordFault(code="1029", rate=0.25)
    expected = RecordFault(code="1019", keys=["A", "B"], times=3, rate=0.5, object="opportunity_role")
    assert parse("1019@A,Bx3:0.5/opportunity_role") == expected
    assert parse("1019@A,B/opportunity_role:0.5x3") == expected  # suffixes in any order
    assert parse("1014@box2x1") == RecordFault(keys=["box2"], times=1)
    assert parse("1014x2/opportunity") == RecordFault(times=2, object="opportunity")
    for bad in ("1004", "1014@", "1014@A:1.5", "1014x0", "1014/lead"):
        with pytest.raises(ValueError, match="record fault"):
            parse(bad)

    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--client-id",
            "cli-id",
            "--client-secret",
            "cli-secret",
            "--opportunities",
            "3",
            "--leads",
            "5",
            "--heavy-leads",
            "0",
            "--record-fault",
            "1014@CLI-1,CLI-2x2",
            "--record-fault",
            "1022@CLI-3/opportunity_role",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.record_faults == [
        RecordFault(code="1014", keys=["CLI-1", "CLI-2"], times=2),
        RecordFault(code="1022", keys=["CLI-3"], object="opportunity_role"),
    ]
    assert config_from_args(build_parser().parse_args(args_without_faults())).record_faults == []
    with Sandbox(cfg) as sb:
        api = Api(sb)
        batch = [{"externalOpportunityId": f"CLI-{n}", "name": "cli"} for n in (1, 2, 3)]
        assert reasons(api.post(OPP, {"input": batch})) == ["1014", "1014", None]
        assert reasons(api.post(OPP, {"input": batch})) == ["1014", "1014", None]
        assert statuses(api.post(OPP, {"input": batch})) == ["created", "created", "updated"]
        role = {"externalOpportunityId": "CLI-3", "leadId": 1, "role": "Auditor"}
        assert reasons(api.post(ROLES, {"input": [role]})) == ["1022"]
        assert statuses(api.post(ROLES, {"input": [role]})) == ["created"]
    assert SandboxConfig(record_faults=[{"code": "1029"}]).record_faults == [RecordFault(code="1029")]  # type: ignore[list-item]


def args_without_faults() -> list[str]:
    return ["--port", "0", "--client-id", "a", "--client-secret", "b"]
