"""Sandbox options for what Marketo's docs leave open, and the delayed-apply ("late") fault."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from marketo_sandbox import Fault, Sandbox
from marketo_sandbox.config import MISSING_OPPORTUNITY_ANSWERS

ROLES = "/rest/v1/opportunities/roles.json"
OPP = "/rest/v1/opportunities.json"

MakeSandbox = Callable[..., Sandbox]


def _session(sb: Sandbox) -> requests.Session:
    token = requests.get(
        sb.base_url + "/identity/oauth/token",
        params={
            "grant_type": "client_credentials",
            "client_id": sb.config.client_id,
            "client_secret": sb.config.client_secret,
        },
        timeout=10,
    ).json()["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


@pytest.mark.parametrize("code", sorted(MISSING_OPPORTUNITY_ANSWERS))
def test_role_of_a_missing_opportunity_is_skipped_with_the_configured_code(
    make_sandbox: MakeSandbox, code: str
) -> None:
    sb = make_sandbox(rate_limit=None, missing_opportunity_code=code)
    lead_id = sb.store.lead_ids()[0]
    body = (
        _session(sb)
        .post(
            sb.base_url + ROLES,
            json={"input": [{"externalOpportunityId": "NO-SUCH-OPP", "leadId": lead_id, "role": "Buyer"}]},
            timeout=10,
        )
        .json()
    )
    assert body["success"] is True
    [result] = body["result"]
    assert result["status"] == "skipped"
    assert [r["code"] for r in result["reasons"]] == [code]


def test_missing_opportunity_code_is_validated() -> None:
    from marketo_sandbox import SandboxConfig

    with pytest.raises(ValueError, match="missing_opportunity_code"):
        SandboxConfig(missing_opportunity_code="9999")


def test_late_fault_drops_the_answer_and_applies_the_write_afterwards(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(rate_limit=None, faults=[Fault(kind="late", calls=[1], seconds=0.5)])
    session = _session(sb)
    old = {"input": [{"externalOpportunityId": "LATE-1", "name": "old"}]}
    with pytest.raises(requests.ConnectionError):
        session.post(sb.base_url + OPP, json=old, timeout=10)
    assert sb.store.opportunity("LATE-1") is None  # not applied yet
    # A retry and a later write land first ...
    body = session.post(
        sb.base_url + OPP, json={"input": [{"externalOpportunityId": "LATE-1", "name": "new"}]}, timeout=10
    ).json()
    assert body["result"][0]["status"] == "created"
    deadline = time.monotonic() + 5
    while sb.store.opportunity("LATE-1")["name"] != "old" and time.monotonic() < deadline:
        time.sleep(0.05)
    # ... and the late first attempt overwrites them.
    assert sb.store.opportunity("LATE-1")["name"] == "old"


def test_late_fault_leaves_queries_alone_and_parses_its_delay() -> None:
    assert Fault.parse("late@2~3") == Fault(kind="late", calls=[2], seconds=3.0)
    assert Fault.parse("slow:0.5~1.5") == Fault(kind="slow", rate=0.5, seconds=1.5)
    with pytest.raises(ValueError, match="after_apply"):
        Fault(kind="late", after_apply=True)


def test_late_fault_is_only_for_writes(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(rate_limit=None, faults=[Fault(kind="late", seconds=0.1)])
    response = _session(sb).get(sb.base_url + "/rest/v1/opportunities/describe.json", timeout=10)
    assert response.json()["success"] is True
