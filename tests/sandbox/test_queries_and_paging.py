"""Queries on the sandbox: paging tokens, filter validation and matching, value formats, field metadata."""

from __future__ import annotations

from typing import Any

import pytest

from marketo_sandbox import Sandbox
from tests.support.sandbox_calls import DOC_GUID_A, OPP, ROLES, Api, MakeSandbox, error_code


# ---------------------------------------------------------------------------------- query
def test_paging_tokens_and_fingerprint(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    heavy = sandbox.config.leads  # the last lead id is the heavy lead
    expected = [r["marketoGUID"] for r in sandbox.store.roles() if r["leadId"] == heavy]
    assert len(expected) == 350
    seen: list[str] = []
    tokens: list[str] = []
    pages = 0
    token = None
    while True:
        params: dict[str, Any] = {"filterType": "leadId", "filterValues": str(heavy), "batchSize": 100}
        if token:
            params["nextPageToken"] = token
        body = api.get(ROLES, **params)
        pages += 1
        assert [r["seq"] for r in body["result"]] == list(range(len(body["result"])))
        seen.extend(r["marketoGUID"] for r in body["result"])
        token = body.get("nextPageToken")
        assert body["moreResult"] is (token is not None)
        if token is None:
            break
        tokens.append(token)
    assert pages == 4
    first_token = tokens[0]
    assert seen == expected  # creation order, no duplicates, nothing missing

    # A token only works with the same filter/fields.
    wrong = api.get(ROLES, filterType="leadId", filterValues=str(heavy - 1), nextPageToken=first_token)
    assert error_code(wrong) == "1003"
    assert wrong["errors"][0]["message"] == "Invalid nextPageToken"
    other_fields = api.get(
        ROLES, filterType="leadId", filterValues=str(heavy), fields="role", nextPageToken=first_token
    )
    assert error_code(other_fields) == "1003"
    assert (
        error_code(api.get(ROLES, filterType="leadId", filterValues=str(heavy), nextPageToken="garbage!"))
        == "1003"
    )
    # batchSize may change between pages; the token is a position.
    rest = api.get(
        ROLES, filterType="leadId", filterValues=str(heavy), nextPageToken=first_token, batchSize=300
    )
    assert [r["marketoGUID"] for r in rest["result"]] == expected[100:]


def test_trailing_empty_page_and_no_more_result(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(trailing_empty_page=True)
    api = Api(sb)
    ext = "19UYA31581L000000"
    body = api.get(ROLES, filterType="externalOpportunityId", filterValues=ext)
    assert len(body["result"]) == 1
    assert body["moreResult"] is True
    last = api.get(
        ROLES, filterType="externalOpportunityId", filterValues=ext, nextPageToken=body["nextPageToken"]
    )
    assert last["result"] == []
    assert "nextPageToken" not in last
    assert last["moreResult"] is False
    sb.configure(trailing_empty_page=False, emit_more_result=False)
    plain = api.get(ROLES, filterType="externalOpportunityId", filterValues=ext)
    assert len(plain["result"]) == 1
    assert "moreResult" not in plain
    assert "nextPageToken" not in plain


def test_query_validation_and_matching(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    # Marketo's codes: 1011 unsupported filterType, 1002 missing parameter, 701 blank one.
    assert error_code(api.get(OPP, filterType="name", filterValues="Chairs")) == "1011"
    body = api.get(OPP, filterType="stage", filterValues="x")
    assert "invalid filterType 'stage'" in body["errors"][0]["message"]
    assert error_code(api.get(OPP, filterValues="x")) == "1002"
    assert error_code(api.get(OPP, filterType="externalOpportunityId")) == "1002"
    assert error_code(api.get(OPP, filterType=" ", filterValues="x")) == "701"
    assert error_code(api.get(OPP, filterType="externalOpportunityId", filterValues=",,")) == "701"
    too_many = ",".join(f"OPP-{i:06d}" for i in range(301))
    assert error_code(api.get(OPP, filterType="externalOpportunityId", filterValues=too_many)) == "1003"
    ok_300 = ",".join(f"OPP-{i:06d}" for i in range(1, 301))
    assert len(api.get(OPP, filterType="externalOpportunityId", filterValues=ok_300)["result"]) == 40
    for size, code in (("0", "1003"), ("301", "1003"), ("abc", "1001"), ("2.5", "1001")):
        assert error_code(api.get(OPP, filterType="idField", filterValues=DOC_GUID_A, batchSize=size)) == code
    unknown = api.get(OPP, filterType="idField", filterValues=DOC_GUID_A, fields="name,bogus")
    assert error_code(unknown) == "1006"
    assert unknown["errors"][0]["message"] == "Field 'bogus' not found"
    # Case-insensitive field names, describe names in the output, nulls omitted.
    rec = api.get(
        OPP, filterType="dedupeFields", filterValues="19UYA31581L000000", fields="MARKETOguid,Name,stage"
    )
    assert rec["result"] == [{"seq": 0, "marketoGUID": DOC_GUID_A, "name": "Chairs"}]
    # Integer fields compare numerically; a value that is no integer is a type mismatch (1001).
    lead_rows = api.get(ROLES, filterType="leadId", filterValues="01872")["result"]
    assert [(r["externalOpportunityId"], r["leadId"]) for r in lead_rows] == [("Opportunity2", 1872)]
    mismatch = api.get(ROLES, filterType="leadId", filterValues="1872,abc")
    assert error_code(mismatch) == "1001"
    assert "'abc'" in mismatch["errors"][0]["message"]
    assert "leadId" in mismatch["errors"][0]["message"]
    tier = api.get(OPP, filterType="partnerTier", filterValues="2,3", fields="partnerTier", batchSize=300)[
        "result"
    ]
    expected = [o for o in sandbox.store.opportunities() if o.get("partnerTier") in (2, 3)]
    assert len(tier) == len(expected) > 0
    assert {r["partnerTier"] for r in tier} == {2, 3}
    # Roles compound key needs the JSON input form.
    assert error_code(api.get(ROLES, filterType="dedupeFields", filterValues="Opportunity1")) == "1003"
    assert api.get(OPP, filterType="externalOpportunityId", filterValues="nope")["result"] == []


def test_value_formats_in_query_results(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    fields = (
        "amount,expectedRevenue,quantity,probability,isWon,closeDate,createdAt,healthScore,winRate,"
        "discountRate,renewalDate,lastReviewedAt,isStrategic,listPrice,legacyFormula,contactEmail"
    )
    rows = api.get(
        OPP, filterType="externalOpportunityId", filterValues="OPP-000001,OPP-000002", fields=fields
    )["result"]
    assert len(rows) == 2
    for row in rows:
        assert isinstance(row["amount"], str)
        assert len(row["amount"].split(".")[1]) == 2
        assert isinstance(row["listPrice"], str)
        assert isinstance(row["quantity"], float)
        assert isinstance(row["discountRate"], float)
        assert type(row["probability"]) is int
        assert type(row["healthScore"]) is int
        assert type(row["winRate"]) is int
        assert isinstance(row["isWon"], bool)
        assert isinstance(row["isStrategic"], bool)
        assert len(row["closeDate"]) == 10
        assert row["closeDate"][4] == "-"
        assert row["createdAt"].endswith("Z")
        assert len(row["createdAt"]) == 20
        assert "2024-01-01" <= row["createdAt"][:10] <= "2026-06-30"
        assert "@" in row["contactEmail"]
        assert "|" in row["legacyFormula"]


# ---------------------------------------------------------------------------------- schema fields
def test_field_metadata_paging_and_by_name(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    first = api.get("/rest/v1/opportunities/schema/fields.json", batchSize=5)
    assert [f["name"] for f in first["result"]] == [
        "externalOpportunityId",
        "name",
        "description",
        "type",
        "stage",
    ]
    assert first["result"][0] == {
        "displayName": "SFDC Oppty Id",
        "name": "externalOpportunityId",
        "description": None,
        "dataType": "string",
        "length": 50,
        "isHidden": False,
        "isHtmlEncodingInEmail": True,
        "isSensitive": False,
        "isCustom": False,
        "isApiCreated": False,
    }
    assert first["moreResult"] is True
    names = [f["name"] for f in first["result"]]
    token = first["nextPageToken"]
    while True:
        page = api.get("/rest/v1/opportunities/schema/fields.json", batchSize=5, nextPageToken=token)
        names.extend(f["name"] for f in page["result"])
        assert "moreResult" in page
        if not page["moreResult"]:
            assert "nextPageToken" not in page
            break
        token = page["nextPageToken"]
    describe = api.get("/rest/v1/opportunities/describe.json")["result"][0]["fields"]
    assert sorted(names) == sorted(f["name"] for f in describe)
    one = api.get("/rest/v1/opportunities/schema/fields/externalOpportunityId.json")
    assert one["result"] == [first["result"][0]]
    custom = api.get("/rest/v1/opportunities/schema/fields/region.json")["result"][0]
    assert custom["isCustom"] is True
    assert custom["length"] == 50
    amount = api.get("/rest/v1/opportunities/schema/fields/amount.json")["result"][0]
    assert "length" not in amount
    assert error_code(api.get("/rest/v1/opportunities/schema/fields/nope.json")) == "610"
    assert (
        error_code(api.get("/rest/v1/opportunities/schema/fields.json", batchSize=5, nextPageToken="AAAA"))
        == "1003"
    )


# ---------------------------------------------------------------------------------- spec parameters
@pytest.mark.parametrize("how", ["url", "form"])
def test_repeated_filter_values_and_fields_mean_the_same_as_comma_separated(
    sandbox: Sandbox, how: str
) -> None:
    """The spec declares filterValues and fields ``collectionFormat: multi``."""
    api = Api(sandbox)
    repeated = [
        ("filterType", "externalOpportunityId"),
        ("filterValues", "OPP-000001"),
        ("filterValues", "OPP-000002,OPP-000003"),
        ("fields", "name"),
        ("fields", "stage"),
    ]
    if how == "url":
        body = api.session.get(sandbox.base_url + OPP, params=repeated, timeout=10).json()
    else:
        body = api.session.post(sandbox.base_url + OPP + "?_method=GET", data=repeated, timeout=10).json()
    assert body["success"] is True, body
    assert len(body["result"]) == 3
    expected = [sandbox.store.opportunity(f"OPP-00000{i}") for i in (1, 2, 3)]
    assert body["result"] == [
        {"seq": i, "marketoGUID": o["marketoGUID"], "name": o["name"], "stage": o["stage"]}
        for i, o in enumerate(o for o in expected if o is not None)
    ]


def test_a_query_with_fields_always_returns_the_marketo_guid(sandbox: Sandbox) -> None:
    """The spec requires marketoGUID on every CustomObject; createdAt/updatedAt come only if asked."""
    api = Api(sandbox)
    rows = api.get(ROLES, filterType="leadId", filterValues="1872", fields="role")["result"]
    assert rows
    assert all(set(r) == {"seq", "marketoGUID", "role"} for r in rows)
    asked = api.get(OPP, filterType="idField", filterValues=DOC_GUID_A, fields="updatedAt")["result"]
    assert set(asked[0]) == {"seq", "marketoGUID", "updatedAt"}
