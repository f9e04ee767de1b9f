"""Syncs and deletes on the sandbox: each record's status and skip reason, CRM sync mode, sales persons."""

from __future__ import annotations

from typing import Any

import pytest

from marketo_sandbox import Sandbox
from tests.support.sandbox_calls import (
    DOC_GUID_A,
    OPP,
    OPP_DELETE,
    ROLES,
    ROLES_DELETE,
    Api,
    MakeSandbox,
    error_code,
    reasons,
)


def test_opportunity_sync_skip_reasons(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"externalOpportunityId": "NEW-1", "name": "New", "bogus": 1}, "1006"),
        ({"externalOpportunityId": "NEW-2", "name": "x" * 256}, "1001"),
        ({"externalOpportunityId": "NEW-3", "name": "New", "probability": "abc"}, "1001"),
        ({"externalOpportunityId": "NEW-4", "name": "New", "isWon": "yes"}, "1001"),
        ({"externalOpportunityId": "NEW-5", "name": "New", "closeDate": "2024-13-01"}, "1001"),
        (
            {"externalOpportunityId": "NEW-6", "name": "New", "externalCreatedDate": "2024-05-01T10:00:00"},
            "1001",
        ),
        ({"externalOpportunityId": "NEW-7", "name": "New", "amount": "12abc"}, "1001"),
        ({"externalOpportunityId": "NEW-8", "name": "New", "contactEmail": "not-an-email"}, "1001"),
        ({"name": "No key"}, "1003"),
        ({"externalOpportunityId": "NEW-9"}, "1003"),
        ({"externalOpportunityId": "NEW-10", "name": None}, "1003"),
        (
            {
                "externalOpportunityId": "NEW-11",
                "name": "Typed",
                "amount": 99.5,
                "quantity": "3.25",
                "probability": "40",
                "isWon": False,
                "externalCreatedDate": "2024-05-01T10:00:00+02:00",
                "closeDate": "2024-06-30",
                "marketoGUID": "00000000-0000-4000-8000-000000000000",
                "createdAt": "2000-01-01T00:00:00Z",
                "legacyFormula": "ignored",
            },
            None,
        ),
        ({"externalOpportunityId": "NEW-11", "name": "Duplicate"}, "1036"),
        ({"externalOpportunityId": "OPP-000001", "name": "Updated name", "description": None}, None),
    ]
    body = api.post(OPP, {"input": [c[0] for c in cases]})
    assert reasons(body) == [c[1] for c in cases]
    assert [r["seq"] for r in body["result"]] == list(range(len(cases)))
    statuses = [r["status"] for r in body["result"]]
    assert statuses[-3:] == ["created", "skipped", "updated"]
    msgs = {
        r["reasons"][0]["code"]: r["reasons"][0]["message"]
        for r in body["result"]
        if r["status"] == "skipped"
    }
    assert msgs["1006"] == "Field 'bogus' not found"
    assert msgs["1036"] == "Duplicate object found in input"
    first_1001 = body["result"][1]["reasons"][0]["message"]
    assert first_1001 == f"Invalid value '{'x' * 200}...' for field 'name'. Required of type 'string'"
    assert (
        body["result"][2]["reasons"][0]["message"]
        == "Invalid value 'abc' for field 'probability'. Required of type 'integer'"
    )
    assert (
        body["result"][8]["reasons"][0]["message"]
        == "Value for required field 'externalOpportunityId' not specified"
    )
    assert body["result"][9]["reasons"][0]["message"] == "Value for required field 'name' not specified"

    typed = sandbox.store.opportunity("NEW-11")
    assert typed is not None
    assert typed["amount"] == "99.50"
    assert typed["quantity"] == 3.25
    assert typed["probability"] == 40
    assert typed["isWon"] is False
    assert typed["externalCreatedDate"] == "2024-05-01T08:00:00Z"
    assert typed["marketoGUID"] == body["result"][11]["marketoGUID"] != "00000000-0000-4000-8000-000000000000"
    assert typed["createdAt"] != "2000-01-01T00:00:00Z"
    assert "legacyFormula" not in typed
    updated = sandbox.store.opportunity("OPP-000001")
    assert updated is not None
    assert updated["name"] == "Updated name"
    assert "description" not in updated  # null clears
    assert updated["stage"]  # untouched fields stay
    assert updated["updatedAt"] >= typed["createdAt"]
    assert sandbox.stats()["record_errors_by_code"]["1001"] == 7

    only = api.post(
        OPP,
        {
            "action": "updateOnly",
            "input": [
                {"externalOpportunityId": "MISSING", "name": "x"},
                {"externalOpportunityId": "NEW-11", "stage": "Won"},
            ],
        },
    )
    assert reasons(only) == ["1004", None]
    assert only["result"][0]["reasons"][0]["message"] == "Opportunity not found"
    create_only = api.post(
        OPP, {"action": "createOnly", "input": [{"externalOpportunityId": "NEW-11", "name": "x"}]}
    )
    assert reasons(create_only) == ["1017"]
    assert create_only["result"][0]["reasons"][0]["message"] == "Object already exists"
    by_id = api.post(
        OPP,
        {
            "action": "updateOnly",
            "dedupeBy": "idField",
            "input": [
                {"marketoGUID": DOC_GUID_A, "stage": "Closed Won", "externalOpportunityId": "IGNORED"},
                {"stage": "x"},
            ],
        },
    )
    assert reasons(by_id) == [None, "1003"]
    chairs = sandbox.store.opportunity("19UYA31581L000000")
    assert chairs is not None
    assert chairs["stage"] == "Closed Won"

    assert (
        error_code(api.post(OPP, {"action": "createOrUpdate", "dedupeBy": "idField", "input": []})) == "1003"
    )
    assert error_code(api.post(OPP, {"action": "upsert", "input": []})) == "1003"
    assert error_code(api.post(OPP, {"action": "createOnly"})) == "1002"  # input missing
    too_many = [{"externalOpportunityId": f"X-{i}", "name": "x"} for i in range(301)]
    assert error_code(api.post(OPP, {"input": too_many})) == "1003"
    assert sandbox.store.opportunity("X-0") is None


def test_role_sync_skip_reasons(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    lead = sandbox.store.lead_ids()[0]
    body = api.post(
        ROLES,
        {
            "input": [
                {"externalOpportunityId": "OPP-000001", "leadId": lead, "role": "Auditor", "isPrimary": True},
                {"externalOpportunityId": "NO-SUCH-OPP", "leadId": lead, "role": "Auditor"},
                {"externalOpportunityId": "OPP-000001", "leadId": 99_999_999, "role": "Auditor"},
                {"externalOpportunityId": "OPP-000001", "leadId": lead},
                {"externalOpportunityId": "OPP-000001", "leadId": "abc", "role": "Auditor"},
                {"externalOpportunityId": "OPP-000001", "leadId": str(lead), "role": "Auditor"},
                {"externalOpportunityId": "OPP-000001", "leadId": lead, "role": "x" * 51},
                {"externalOpportunityId": "OPP-000001", "leadId": lead, "role": "Ally", "isPrimary": "no"},
            ]
        },
    )
    assert reasons(body) == [None, "1004", "1004", "1003", "1001", "1036", "1001", "1001"]
    assert body["result"][1]["reasons"][0]["message"] == "Opportunity 'NO-SUCH-OPP' not found"
    assert body["result"][2]["reasons"][0]["message"] == "Lead '99999999' not found"
    assert body["result"][3]["reasons"][0]["message"] == "Value for required field 'role' not specified"
    created = sandbox.store.role("OPP-000001", lead, "Auditor")
    assert created is not None
    assert created["isPrimary"] is True
    upd = api.post(
        ROLES,
        {
            "action": "updateOnly",
            "dedupeBy": "idField",
            "input": [{"marketoGUID": created["marketoGUID"], "isPrimary": False}],
        },
    )
    assert upd["result"] == [{"seq": 0, "status": "updated", "marketoGUID": created["marketoGUID"]}]
    after = sandbox.store.role("OPP-000001", lead, "Auditor")
    assert after is not None
    assert after["isPrimary"] is False
    missing = api.post(
        ROLES,
        {
            "action": "updateOnly",
            "input": [{"externalOpportunityId": "OPP-000001", "leadId": lead, "role": "Nope"}],
        },
    )
    assert missing["result"][0]["reasons"][0] == {"code": "1004", "message": "Opportunity role not found"}
    dup = api.post(
        ROLES,
        {
            "action": "createOnly",
            "input": [{"externalOpportunityId": "OPP-000001", "leadId": lead, "role": "Auditor"}],
        },
    )
    assert reasons(dup) == ["1017"]
    dels = api.post(
        ROLES_DELETE,
        {
            "deleteBy": "idField",
            "input": [
                {"marketoGUID": created["marketoGUID"]},
                {"marketoGUID": created["marketoGUID"]},
                {"leadId": 1},
            ],
        },
    )
    assert reasons(dels) == [None, "1013", "1003"]
    assert error_code(api.post(ROLES_DELETE, {"deleteBy": "name", "input": []})) == "1003"


def test_crm_sync_mode(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(crm_sync=True)
    api = Api(sb)
    assert api.get("/rest/v1/opportunities/describe.json")["success"] is True
    assert len(api.get(OPP, filterType="idField", filterValues=DOC_GUID_A)["result"]) == 1
    body = api.post(
        OPP, {"input": [{"externalOpportunityId": "A", "name": "a"}, {"externalOpportunityId": "B"}]}
    )
    assert reasons(body) == ["1018", "1018"]
    assert body["result"][0]["reasons"][0]["message"].startswith("CRM Enabled")
    assert reasons(api.post(OPP_DELETE, {"input": [{"externalOpportunityId": "19UYA31581L000000"}]})) == [
        "1018"
    ]
    assert reasons(
        api.post(ROLES, {"input": [{"externalOpportunityId": "Opportunity1", "leadId": 1, "role": "X"}]})
    ) == ["1018"]
    for body in (
        api.get("/rest/v1/opportunities/roles/describe.json"),
        api.get(ROLES, filterType="leadId", filterValues="1"),
    ):
        assert error_code(body) == "1018"
        assert "not available" in body["errors"][0]["message"]
    assert sb.store.opportunity("A") is None
    assert sb.store.opportunity("19UYA31581L000000") is not None


@pytest.mark.parametrize("level", ["response", "record"])
def test_unknown_sales_person_gets_718_when_the_field_is_a_reference(
    make_sandbox: MakeSandbox, level: str
) -> None:
    sb = make_sandbox(rate_limit=None, sales_person_check=level)
    api = Api(sb)
    described = api.get("/rest/v1/opportunities/describe.json")["result"][0]["fields"]
    assert {f["name"]: f["dataType"] for f in described}["externalSalesPersonId"] == "reference"
    known = sb.store.sales_persons()[0]
    body = api.post(
        OPP,
        {
            "input": [
                {"externalOpportunityId": "SP-OK", "name": "ok", "externalSalesPersonId": known},
                {"externalOpportunityId": "SP-BAD", "name": "bad", "externalSalesPersonId": "SP-NOBODY"},
            ]
        },
    )
    if level == "response":
        assert error_code(body) == "718"
        assert sb.store.opportunity("SP-OK") is None  # the whole call was refused
    else:
        assert reasons(body) == [None, "718"]
        assert sb.store.opportunity("SP-BAD") is None
    sb.store.add_sales_persons(["SP-NOBODY"])
    again = api.post(
        OPP,
        {"input": [{"externalOpportunityId": "SP-BAD", "name": "b", "externalSalesPersonId": "SP-NOBODY"}]},
    )
    assert reasons(again) == [None]


def test_sales_person_is_a_plain_string_by_default(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    body = api.post(
        OPP, {"input": [{"externalOpportunityId": "SP-X", "name": "x", "externalSalesPersonId": "anyone"}]}
    )
    assert reasons(body) == [None]
