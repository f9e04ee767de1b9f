"""Faults injected into whole calls: each kind by call number, by rate and path, slow, after the write."""

from __future__ import annotations

import time

import pytest
import requests

from marketo_sandbox import Fault
from tests.support.sandbox_calls import DOC_GUID_A, OPP, Api, MakeSandbox, error_code


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
