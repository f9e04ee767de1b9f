"""The sandbox over HTTP: _method=GET, 413/414, gzip and keep-alive, and the codes of malformed requests."""

from __future__ import annotations

import gzip
import http.client
import json

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
    identity,
    reasons,
)


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
