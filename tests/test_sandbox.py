"""The Marketo sandbox over real HTTP: docs examples, identity, limits, faults, paging, sync, delete."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from marketo_sandbox import RECORD_FAULT_MESSAGES, Fault, RecordFault, Sandbox, SandboxConfig
from marketo_sandbox.cli import build_parser, config_from_args

OPP = "/rest/v1/opportunities.json"
OPP_DELETE = "/rest/v1/opportunities/delete.json"
ROLES = "/rest/v1/opportunities/roles.json"
ROLES_DELETE = "/rest/v1/opportunities/roles/delete.json"
DOC_GUID_A = "dff23271-f996-47d7-984f-f2676861b5fa"
DOC_GUID_C = "dff23271-f996-47d7-984f-f2676861b5fc"

MakeSandbox = Callable[..., Sandbox]


class Api:
    """A tiny authenticated client for the tests."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.base = sb.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {identity(sb).json()['access_token']}"

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        r = self.session.get(self.base + path, params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: Any) -> dict[str, Any]:
        r = self.session.post(self.base + path, json=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()


def identity(sb: Sandbox, secret: str | None = None) -> requests.Response:
    params = {
        "grant_type": "client_credentials",
        "client_id": sb.config.client_id,
        "client_secret": secret if secret is not None else sb.config.client_secret,
    }
    return requests.get(sb.base_url + "/identity/oauth/token", params=params, timeout=10)


def error_code(body: dict[str, Any]) -> str:
    assert body["success"] is False, body
    assert "result" not in body
    assert "#" in body["requestId"]
    return str(body["errors"][0]["code"])


def reasons(body: dict[str, Any]) -> list[str | None]:
    assert body["success"] is True, body
    return [r["reasons"][0]["code"] if r["status"] == "skipped" else None for r in body["result"]]


# ---------------------------------------------------------------------------------- doc examples
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


# ---------------------------------------------------------------------------------- identity
def test_identity_same_token_bad_secret_and_form_body(sandbox: Sandbox) -> None:
    first = identity(sandbox)
    assert first.status_code == 200
    tok = first.json()
    assert tok["token_type"] == "bearer"
    assert tok["scope"] == "apis@sandbox.local"
    assert tok["access_token"].endswith(":sb")
    assert 3590 <= tok["expires_in"] <= 3600
    second = identity(sandbox).json()
    assert second["access_token"] == tok["access_token"]
    form = requests.post(
        sandbox.base_url + "/identity/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "test-client", "client_secret": "test-secret"},
        timeout=10,
    )
    assert form.json()["access_token"] == tok["access_token"]
    bad = identity(sandbox, secret="wrong")
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}
    stats = sandbox.stats()
    assert stats["identity_calls"] == 4
    assert stats["rest_calls"] == 0
    assert stats["quota_used"] == 0


def test_token_expiry_revocation_and_query_param(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(token_ttl_seconds=0.6)
    api = Api(sb)
    describe = "/rest/v1/opportunities/describe.json"
    assert api.get(describe)["success"] is True
    old = api.session.headers["Authorization"]
    time.sleep(0.7)
    assert error_code(api.get(describe)) == "602"
    assert api.get(describe)["errors"][0]["message"] == "Access token expired"
    fresh = identity(sb).json()["access_token"]
    assert f"Bearer {fresh}" != old
    api.session.headers["Authorization"] = f"Bearer {fresh}"
    assert api.get(describe)["success"] is True

    sb.configure(token_ttl_seconds=3600)
    api.session.headers["Authorization"] = f"Bearer {identity(sb).json()['access_token']}"
    assert api.get(describe)["success"] is True
    sb.revoke_tokens()
    body = api.get(describe)
    assert error_code(body) == "601"
    assert body["errors"][0]["message"] == "Access token invalid"

    valid = identity(sb).json()["access_token"]
    legacy = requests.get(sb.base_url + describe, params={"access_token": valid}, timeout=10).json()
    assert error_code(legacy) == "601"
    assert "no longer supported" in legacy["errors"][0]["message"]
    # ... even together with a valid header
    both = requests.get(
        sb.base_url + describe,
        params={"access_token": valid},
        headers={"Authorization": f"Bearer {valid}"},
        timeout=10,
    ).json()
    assert error_code(both) == "601"
    assert error_code(requests.get(sb.base_url + describe, timeout=10).json()) == "601"
    assert (
        error_code(
            requests.get(sb.base_url + describe, headers={"Authorization": "Bearer nope"}, timeout=10).json()
        )
        == "601"
    )
    # 601/602 answers are not counted against the rate limit or the quota.
    stats = sb.stats()
    assert stats["errors_by_code"] == {"602": 2, "601": 5}
    assert stats["quota_used"] == 3


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


def test_method_get_form_and_uri_and_body_limits(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    values = ",".join(f"OPP-{i:06d}" for i in range(1, 301))
    long_fields = "name," * 700 + "name"
    r = api.session.get(
        sandbox.base_url + OPP,
        params={"filterType": "externalOpportunityId", "filterValues": values, "fields": long_fields},
        timeout=10,
    )
    assert r.status_code == 414
    assert r.headers["Content-Type"].startswith("text/html")
    assert "414" in r.text
    form = api.session.post(
        sandbox.base_url + OPP + "?_method=GET",
        data={"filterType": "externalOpportunityId", "filterValues": values, "fields": long_fields},
        timeout=10,
    ).json()
    assert form["success"] is True
    assert len(form["result"]) == 40
    assert set(form["result"][0]) == {"seq", "name", "marketoGUID"}  # the spec requires marketoGUID
    # nextPageToken may also travel in the URL of a _method=GET POST (marketorestpython does this).
    page1 = api.session.post(
        sandbox.base_url + OPP + "?_method=GET",
        data={"filterType": "externalOpportunityId", "filterValues": values, "batchSize": "25"},
        timeout=10,
    ).json()
    page2 = api.session.post(
        sandbox.base_url + OPP + "?_method=GET&nextPageToken=" + page1["nextPageToken"],
        data={"filterType": "externalOpportunityId", "filterValues": values, "batchSize": "25"},
        timeout=10,
    ).json()
    assert len(page1["result"]) == 25
    assert len(page2["result"]) == 15
    assert page2["moreResult"] is False

    big = api.session.post(
        sandbox.base_url + OPP,
        data=b"x" * 1_100_000,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert big.status_code == 413
    assert "413" in big.text
    # The connection is still usable after the drained 413.
    assert api.get("/rest/v1/opportunities/describe.json")["success"] is True
    assert sandbox.stats()["http_status"]["414"] == 1
    assert sandbox.stats()["http_status"]["413"] == 1


def test_request_errors_605_609_610_612(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    base = sandbox.base_url
    assert (
        error_code(
            api.session.post(
                base + OPP, data="{not json", headers={"Content-Type": "application/json"}, timeout=10
            ).json()
        )
        == "609"
    )
    wrong_type = api.session.post(
        base + OPP, data=json.dumps({"input": []}), headers={"Content-Type": "text/plain"}, timeout=10
    )
    assert error_code(wrong_type.json()) == "612"
    assert (
        error_code(
            api.session.post(
                base + OPP + "?_method=GET", data="a=b", headers={"Content-Type": "text/csv"}, timeout=10
            ).json()
        )
        == "612"
    )
    assert error_code(api.get("/rest/v1/leads/nothing.json")) == "610"
    assert error_code(api.get("/rest/v1/opportunities/roles/schema/fields.json")) == "610"
    assert error_code(api.session.put(base + OPP, json={}, timeout=10).json()) == "605"
    assert error_code(api.get(OPP_DELETE)) == "605"
    assert (
        error_code(
            api.session.post(base + "/rest/v1/opportunities/describe.json", json={}, timeout=10).json()
        )
        == "605"
    )
    stats = sandbox.stats()
    assert stats["errors_by_code"]["605"] == 3
    # 605 is not counted against the quota; 609, 610 and 612 are.
    assert stats["quota_used"] == stats["rest_calls"] - 3


# ---------------------------------------------------------------------------------- sync / delete
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


# ---------------------------------------------------------------------------------- limits
def test_rate_limit_606_sliding_window(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(rate_limit=5, rate_window_seconds=1.0)
    api = Api(sb)
    describe = "/rest/v1/opportunities/describe.json"
    # Calls refused with 601 do not use up the window.
    for _ in range(3):
        assert error_code(requests.get(sb.base_url + describe, timeout=10).json()) == "601"
    for _ in range(5):
        assert api.get(describe)["success"] is True
    refused = api.get(describe)
    assert error_code(refused) == "606"
    assert refused["errors"][0]["message"] == "Max rate limit '5' exceeded with in '1' secs"
    time.sleep(1.05)
    assert api.get(describe)["success"] is True
    stats = sb.stats()
    assert stats["errors_by_code"] == {"601": 3, "606": 1}
    assert stats["quota_used"] == 6


def test_daily_quota_607(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(daily_quota=3)
    api = Api(sb)
    for _ in range(3):
        assert api.get("/rest/v1/opportunities/describe.json")["success"] is True
    body = api.get("/rest/v1/opportunities/describe.json")
    assert error_code(body) == "607"
    assert "12:00 AM CST" in body["errors"][0]["message"]
    sb.configure(daily_quota=None)
    assert api.get("/rest/v1/opportunities/describe.json")["success"] is True


def _hammer(sb: Sandbox, threads: int, calls: int) -> list[str]:
    token = identity(sb).json()["access_token"]
    codes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker() -> None:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        barrier.wait(timeout=30)
        for _ in range(calls):
            body = s.get(sb.base_url + "/rest/v1/opportunities/describe.json", timeout=30).json()
            with lock:
                codes.append("ok" if body["success"] else body["errors"][0]["code"])

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    return codes


def test_concurrency_limit_615(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(concurrency_limit=2, latency_seconds=0.6, rate_limit=None)
    codes = _hammer(sb, threads=5, calls=1)
    assert len(codes) == 5
    assert codes.count("ok") == 2
    assert codes.count("615") == 3
    stats = sb.stats()
    assert stats["max_concurrency_seen"] == 2
    assert stats["quota_used"] == 2  # 615 refusals are not counted
    assert stats["in_flight"] == 0


def test_many_concurrent_clients_no_deadlock(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(concurrency_limit=None, rate_limit=None, latency_seconds=0.02)
    codes = _hammer(sb, threads=12, calls=8)
    assert codes == ["ok"] * 96
    assert sb.stats()["max_concurrency_seen"] >= 2


# ---------------------------------------------------------------------------------- faults
def test_fault_kinds_by_call_number(make_sandbox: MakeSandbox) -> None:
    kinds = ["606", "615", "604", "608", "611", "614", "713", "http500", "http502", "http503", "drop"]
    sb = make_sandbox(faults=[Fault(kind=k, calls=[i + 1]) for i, k in enumerate(kinds)], rate_limit=None)
    api = Api(sb)
    url = sb.base_url + "/rest/v1/opportunities/describe.json"
    for kind in kinds:
        if kind == "drop":
            with pytest.raises(requests.ConnectionError):
                api.session.get(url, timeout=10)
        elif kind.startswith("http"):
            r = api.session.get(url, timeout=10)
            assert r.status_code == int(kind[4:])
            assert r.headers["Content-Type"].startswith("text/html")
        else:
            assert error_code(api.session.get(url, timeout=10).json()) == kind
    assert api.session.get(url, timeout=10).json()["success"] is True
    stats = sb.stats()
    assert stats["rest_calls"] == len(kinds) + 1
    assert stats["faults_injected"] == dict.fromkeys(kinds, 1)
    assert stats["quota_used"] == 1
    # Call numbering restarts with reset_stats.
    sb.reset_stats()
    assert error_code(api.session.get(url, timeout=10).json()) == "606"


def test_fault_rate_path_slow_and_after_apply(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(
        rate_limit=None, faults=[Fault(kind="608", rate=0.3, path="/rest/v1/opportunities/describe.json")]
    )
    api = Api(sb)

    def run() -> list[str]:
        out = []
        for _ in range(30):
            body = api.get("/rest/v1/opportunities/describe.json")
            out.append("ok" if body["success"] else error_code(body))
        return out

    first = run()
    assert 0 < first.count("608") < 30
    sb.reset_stats()
    assert run() == first  # the fault RNG is seeded from cfg.seed
    # The path filter leaves other endpoints alone.
    assert all(api.get(OPP, filterType="idField", filterValues=DOC_GUID_A)["success"] for _ in range(10))

    sb.configure(faults=[Fault(kind="slow", seconds=0.4, calls=[1])])
    sb.reset_stats()
    started = time.monotonic()
    assert api.get("/rest/v1/opportunities/describe.json")["success"] is True
    assert time.monotonic() - started >= 0.4

    sb.configure(faults=[Fault(kind="604", after_apply=True)])
    sb.reset_stats()
    assert api.get("/rest/v1/opportunities/describe.json")["success"] is True  # not a write
    body = api.post(OPP, {"input": [{"externalOpportunityId": "AFTER-1", "name": "Applied anyway"}]})
    assert error_code(body) == "604"
    assert sb.store.opportunity("AFTER-1") is not None
    sb.configure(faults=[Fault(kind="drop", calls=[1], after_apply=True)])
    sb.reset_stats()
    with pytest.raises(requests.ConnectionError):
        api.session.post(
            sb.base_url + OPP, json={"input": [{"externalOpportunityId": "AFTER-2", "name": "x"}]}, timeout=10
        )
    assert sb.store.opportunity("AFTER-2") is not None


# ---------------------------------------------------------------------------------- record faults
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


# ---------------------------------------------------------------------------------- HTTP details
def test_gzip_keepalive_and_request_ids(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    token = identity(sb).json()["access_token"]
    conn = http.client.HTTPConnection("127.0.0.1", sb.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"}
    conn.request("GET", "/rest/v1/opportunities/describe.json", headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    assert resp.getheader("Content-Encoding") == "gzip"
    assert int(resp.getheader("Content-Length") or 0) == len(raw)
    first = json.loads(gzip.decompress(raw))
    # Same connection again (keep-alive): a small body is not compressed.
    conn.request("GET", OPP + "?filterType=idField&filterValues=nothing", headers=headers)
    resp = conn.getresponse()
    small = resp.read()
    assert resp.getheader("Content-Encoding") is None
    second = json.loads(small)
    assert second["result"] == []
    assert first["requestId"] != second["requestId"]
    sb.configure(gzip=False)
    conn.request("GET", "/rest/v1/opportunities/describe.json", headers=headers)
    resp = conn.getresponse()
    plain = resp.read()
    assert resp.getheader("Content-Encoding") is None
    assert json.loads(plain)["success"] is True
    conn.close()


def test_sandbox_inspection_endpoints(sandbox: Sandbox) -> None:
    base = sandbox.base_url
    api = Api(sandbox)
    api.get("/rest/v1/opportunities/describe.json")
    api.session.post(
        base + OPP + "?_method=GET", data={"filterType": "idField", "filterValues": DOC_GUID_A}, timeout=10
    )
    stats = requests.get(base + "/_sandbox/stats", timeout=10).json()
    assert stats == sandbox.stats()
    assert stats["calls_by_endpoint"]["GET /rest/v1/opportunities/describe.json"] == 1
    assert stats["calls_by_endpoint"][f"QUERY {OPP}"] == 1
    assert stats["rest_calls"] == 2
    assert stats["identity_calls"] == 1
    opps = requests.get(base + "/_sandbox/store", params={"object": "opportunities"}, timeout=10).json()
    assert opps["count"] == len(sandbox.store.opportunities()) == 45
    assert opps["result"][0]["externalOpportunityId"] == "19UYA31581L000000"
    roles = requests.get(base + "/_sandbox/store", params={"object": "opportunity_roles"}, timeout=10).json()
    assert roles["result"] == sandbox.store.roles()
    leads = requests.get(base + "/_sandbox/store", params={"object": "leads"}, timeout=10).json()
    assert leads["result"] == sandbox.store.lead_ids()
    assert requests.get(base + "/_sandbox/store", params={"object": "nope"}, timeout=10).status_code == 400

    cfg = requests.post(
        base + "/_sandbox/config",
        json={"rate_limit": 1, "faults": [{"kind": "608", "calls": [9]}]},
        timeout=10,
    )
    assert cfg.status_code == 200
    assert cfg.json()["client_secret"] == "***"
    assert sandbox.config.rate_limit == 1
    assert sandbox.config.faults == [Fault(kind="608", calls=[9])]
    assert requests.post(base + "/_sandbox/config", json={"leads": 5}, timeout=10).status_code == 400
    assert (
        requests.post(base + "/_sandbox/config", json={"rate_limit": "many"}, timeout=10).status_code == 400
    )
    assert (
        requests.post(base + "/_sandbox/config", json={"faults": [{"kind": "nope"}]}, timeout=10).status_code
        == 400
    )
    assert requests.post(base + "/_sandbox/reset-stats", timeout=10).json() == {"ok": True}
    assert sandbox.stats()["rest_calls"] == 0
    assert requests.post(base + "/_sandbox/revoke-tokens", timeout=10).json() == {"ok": True}
    assert error_code(api.get("/rest/v1/opportunities/describe.json")) == "601"
    assert requests.get(base + "/_sandbox/nothing", timeout=10).status_code == 404


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


def test_bad_requests_get_marketos_documented_codes(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    # 1011: a filterType that is not searchable; 1002: a required parameter missing; 701: blank.
    assert error_code(api.get(ROLES, filterType="isPrimary", filterValues="true")) == "1011"
    assert error_code(api.get(ROLES, filterType="leadId")) == "1002"
    assert error_code(api.get(ROLES, filterType="leadId", filterValues="")) == "701"
    # 1001: a value of the wrong type, in the URL, a JSON lookup body or a delete input.
    assert error_code(api.get(ROLES, filterType="leadId", filterValues="1,abc")) == "1001"
    assert error_code(api.get(ROLES, filterType="leadId", filterValues="1", batchSize="abc")) == "1001"
    json_lookup = api.session.post(
        sandbox.base_url + ROLES + "?_method=GET",
        json={"input": [{"externalOpportunityId": "Opportunity1", "leadId": "one", "role": "Captain"}]},
        timeout=10,
    ).json()
    assert error_code(json_lookup) == "1001"
    deleted = api.post(
        ROLES_DELETE, {"input": [{"externalOpportunityId": "X", "leadId": "abc", "role": "r"}]}
    )
    assert reasons(deleted) == ["1001"]
    assert "leadId" in deleted["result"][0]["reasons"][0]["message"]
    # 1002: a sync without input.
    assert error_code(api.post(ROLES, {"action": "createOrUpdate"})) == "1002"
    # 1003: a marketoGUID sent with createOnly (the docs' own example of 1003); nothing is created.
    with_guid = api.post(
        OPP,
        {
            "action": "createOnly",
            "input": [{"externalOpportunityId": "G-1", "name": "G", "marketoGUID": DOC_GUID_A}],
        },
    )
    assert reasons(with_guid) == ["1003"]
    assert sandbox.store.opportunity("G-1") is None
    # In a JSON lookup body filterType defaults to dedupeFields (the spec says so).
    default_type = api.session.post(
        sandbox.base_url + ROLES + "?_method=GET",
        json={"input": [{"externalOpportunityId": "Opportunity1", "leadId": 1, "role": "Captain"}]},
        timeout=10,
    ).json()
    assert [r["role"] for r in default_type["result"]] == ["Captain"]


def test_a_query_with_fields_always_returns_the_marketo_guid(sandbox: Sandbox) -> None:
    """The spec requires marketoGUID on every CustomObject; createdAt/updatedAt come only if asked."""
    api = Api(sandbox)
    rows = api.get(ROLES, filterType="leadId", filterValues="1872", fields="role")["result"]
    assert rows
    assert all(set(r) == {"seq", "marketoGUID", "role"} for r in rows)
    asked = api.get(OPP, filterType="idField", filterValues=DOC_GUID_A, fields="updatedAt")["result"]
    assert set(asked[0]) == {"seq", "marketoGUID", "updatedAt"}


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
