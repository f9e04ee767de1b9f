"""The sandbox answers Marketo's documented examples as the docs show them: describe, query, sync, delete."""

from __future__ import annotations

from marketo_sandbox import Sandbox
from tests.support.sandbox_calls import (
    DOC_GUID_A,
    DOC_GUID_C,
    OPP,
    OPP_DELETE,
    ROLES,
    ROLES_DELETE,
    Api,
    reasons,
)


def test_describe_shapes_match_docs(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    body = api.get("/rest/v1/opportunities/describe.json")
    assert body["success"] is True
    desc = body["result"][0]
    assert desc["name"] == "opportunity"
    assert desc["displayName"] == "Opportunity"
    assert desc["idField"] == "marketoGUID"
    assert desc["dedupeFields"] == ["externalOpportunityId"]
    assert desc["searchableFields"][:4] == [
        ["externalOpportunityId"],
        ["marketoGUID"],
        ["externalCompanyId"],
        ["externalSalesPersonId"],
    ]
    assert ["region"] in desc["searchableFields"]
    assert ["partnerTier"] in desc["searchableFields"]
    assert ["discountRate"] not in desc["searchableFields"]
    fields = {f["name"]: f for f in desc["fields"]}
    assert desc["fields"][:4] == [
        {
            "name": "marketoGUID",
            "displayName": "Marketo GUID",
            "dataType": "string",
            "length": 36,
            "updateable": False,
        },
        {"name": "createdAt", "displayName": "Created At", "dataType": "datetime", "updateable": False},
        {"name": "updatedAt", "displayName": "Updated At", "dataType": "datetime", "updateable": False},
        {
            "name": "externalOpportunityId",
            "displayName": "External Opportunity Id",
            "dataType": "string",
            "length": 50,
            "updateable": False,
        },
    ]
    assert fields["amount"]["dataType"] == "currency"
    assert fields["description"]["length"] == 2000
    assert fields["legacyFormula"] == {
        "name": "legacyFormula",
        "displayName": "Legacy Formula",
        "dataType": "formula",
        "updateable": False,
    }
    types = {f["dataType"] for f in desc["fields"]}
    assert types >= {"string", "text", "integer", "float", "currency", "percent", "score", "boolean"}
    assert types >= {"date", "datetime", "email", "phone", "url", "reference", "formula"}

    roles = api.get("/rest/v1/opportunities/roles/describe.json")["result"][0]
    assert roles["name"] == "opportunityRole"
    assert roles["dedupeFields"] == ["externalOpportunityId", "leadId", "role"]
    assert roles["searchableFields"] == [
        ["externalOpportunityId", "leadId", "role"],
        ["marketoGUID"],
        ["leadId"],
        ["externalOpportunityId"],
    ]
    assert [f["name"] for f in roles["fields"]] == [
        "marketoGUID",
        "externalOpportunityId",
        "leadId",
        "role",
        "isPrimary",
        "externalCreatedDate",
        "createdAt",
        "updatedAt",
    ]
    assert roles["fields"][2] == {
        "name": "leadId",
        "displayName": "Lead Id",
        "dataType": "integer",
        "updateable": False,
    }
    assert roles["fields"][4]["updateable"] is True


def test_doc_query_example(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    body = api.get(
        OPP,
        filterType="marketoGUID",
        filterValues=f"{DOC_GUID_A},{DOC_GUID_C},dff23271-f996-47d7-984f-f2676861b5fb",
        fields="marketoGUID,externalOpportunityId,name,description,amount,source",
    )
    assert body["result"] == [
        {
            "seq": 0,
            "marketoGUID": DOC_GUID_A,
            "externalOpportunityId": "19UYA31581L000000",
            "name": "Chairs",
            "description": "Chairs",
            "amount": "1604.47",
            "source": "Inbound Sales Call/Email",
        },
        {
            "seq": 1,
            "marketoGUID": DOC_GUID_C,
            "externalOpportunityId": "29UYA31581L000000",
            "name": "Big Dog Day Care-Phase12",
            "description": "Big Dog Day Care-Phase12",
            "amount": "1604.47",
            "source": "Email",
        },
    ]
    assert body["moreResult"] is False
    assert "nextPageToken" not in body
    # Without `fields`: marketoGUID, the dedupe field, createdAt, updatedAt.
    default = api.get(OPP, filterType="idField", filterValues=DOC_GUID_A)["result"][0]
    assert sorted(default) == ["createdAt", "externalOpportunityId", "marketoGUID", "seq", "updatedAt"]


def test_doc_role_compound_query_example(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    r = api.session.post(
        sandbox.base_url + ROLES + "?_method=GET",
        json={
            "filterType": "dedupeFields",
            "fields": ["marketoGuid", "externalOpportunityId", "leadId", "role"],
            "input": [
                {"externalOpportunityId": "Opportunity1", "leadId": 1, "role": "Captain"},
                {"externalOpportunityId": "Opportunity2", "leadId": 1872, "role": "Commander"},
                {"externalOpportunityId": "Opportunity3", "leadId": 273891, "role": "Lieutenant Commander"},
                {"externalOpportunityId": "Opportunity3", "leadId": 273891, "role": "Ensign"},
            ],
        },
        timeout=10,
    )
    body = r.json()
    assert body["success"] is True
    rows = [(x["externalOpportunityId"], x["leadId"], x["role"]) for x in body["result"]]
    assert rows == [
        ("Opportunity1", 1, "Captain"),
        ("Opportunity2", 1872, "Commander"),
        ("Opportunity3", 273891, "Lieutenant Commander"),
    ]
    assert all(
        len(x["marketoGUID"]) == 36
        and set(x) == {"seq", "marketoGUID", "externalOpportunityId", "leadId", "role"}
        for x in body["result"]
    )
    assert [x["seq"] for x in body["result"]] == [0, 1, 2]
    assert sandbox.stats()["calls_by_endpoint"]["QUERY " + ROLES] == 1


def test_doc_sync_and_delete_examples(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    # The doc's sync answer is "updated, created": 29UYA... must not exist yet, so remove it first.
    assert reasons(api.post(OPP_DELETE, {"deleteBy": "idField", "input": [{"marketoGUID": DOC_GUID_C}]})) == [
        None
    ]
    body = api.post(
        OPP,
        {
            "action": "createOrUpdate",
            "dedupeBy": "dedupeFields",
            "input": [
                {
                    "externalOpportunityId": "19UYA31581L000000",
                    "name": "Chairs",
                    "description": "Chairs",
                    "amount": "1604.47",
                    "source": "Inbound Sales Call/Email",
                },
                {
                    "externalOpportunityId": "29UYA31581L000000",
                    "name": "Big Dog Day Care-Phase12",
                    "description": "Big Dog Day Care-Phase12",
                    "amount": "1604.47",
                    "source": "Email",
                },
            ],
        },
    )
    assert [(r["seq"], r["status"]) for r in body["result"]] == [(0, "updated"), (1, "created")]
    assert body["result"][0]["marketoGUID"] == DOC_GUID_A
    new_guid = body["result"][1]["marketoGUID"]
    assert len(new_guid) == 36
    assert new_guid != DOC_GUID_C

    roles = api.post(
        ROLES,
        {
            "action": "createOrUpdate",
            "dedupeBy": "dedupeFields",
            "input": [
                {
                    "externalOpportunityId": "19UYA31581L000000",
                    "leadId": 456783,
                    "role": "Technical Buyer",
                    "isPrimary": False,
                },
                {
                    "externalOpportunityId": "19UYA31581L000000",
                    "leadId": 456784,
                    "role": "Technical Buyer",
                    "isPrimary": False,
                },
            ],
        },
    )
    assert [(r["seq"], r["status"]) for r in roles["result"]] == [(0, "updated"), (1, "created")]
    created_role = sandbox.store.role("19UYA31581L000000", 456784, "Technical Buyer")
    assert created_role is not None
    assert created_role["isPrimary"] is False

    deleted = api.post(
        ROLES_DELETE,
        {
            "deleteBy": "dedupeFields",
            "input": [
                {"externalOpportunityId": "19UYA31581L000000", "leadId": 456783, "role": "Technical Buyer"}
            ],
        },
    )
    assert deleted["result"] == [
        {"seq": 0, "marketoGUID": roles["result"][0]["marketoGUID"], "status": "deleted"}
    ]

    opp_del = api.post(
        OPP_DELETE,
        {
            "deleteBy": "dedupeFields",
            "input": [
                {"externalOpportunityId": "19UYA31581L000000"},
                {"externalOpportunityId": "29UYA31581L000000"},
            ],
        },
    )
    assert opp_del["result"] == [
        {"seq": 0, "marketoGUID": DOC_GUID_A, "status": "deleted"},
        {"seq": 1, "marketoGUID": new_guid, "status": "deleted"},
    ]
    # Deleting an opportunity deletes its roles (the 456784 role went with it).
    assert sandbox.store.role("19UYA31581L000000", 456784, "Technical Buyer") is None
    again = api.post(OPP_DELETE, {"input": [{"externalOpportunityId": "19UYA31581L000000"}]})
    assert again["result"] == [
        {"seq": 0, "status": "skipped", "reasons": [{"code": "1013", "message": "Object not found"}]}
    ]
