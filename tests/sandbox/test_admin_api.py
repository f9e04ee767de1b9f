"""The sandbox's own /_sandbox API: stats, store, config, reset-stats, revoke-tokens."""

from __future__ import annotations

import requests

from marketo_sandbox import Fault, Sandbox
from tests.support.sandbox_calls import DOC_GUID_A, OPP, Api, error_code


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
