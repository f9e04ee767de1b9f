"""Sandbox options for what Marketo's docs leave open, and the delayed-apply ("late") fault."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from marketo_sandbox import Fault, Sandbox
from marketo_sandbox.config import MISSING_OPPORTUNITY_ANSWERS

ROLES = "/rest/v1/opportunities/roles.json"
OPP = "/rest/v1/opportunities.json"

MakeSandbox = Callable[..., Sandbox]


def _session(sb: Sandbox) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {sb.issue_token()}"
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


def _query(sb: Sandbox, session: requests.Session, path: str, **params: str) -> dict[str, Any]:
    body: dict[str, Any] = session.get(sb.base_url + path, params=params, timeout=10).json()
    return body


@pytest.mark.parametrize("case_sensitive", [True, False])
def test_string_filter_values_match_case_as_configured(
    make_sandbox: MakeSandbox, case_sensitive: bool
) -> None:
    sb = make_sandbox(rate_limit=None, filter_case_sensitive=case_sensitive)
    session = _session(sb)
    exact = _query(sb, session, OPP, filterType="externalOpportunityId", filterValues="OPP-000001")["result"]
    lower = _query(sb, session, OPP, filterType="externalOpportunityId", filterValues="opp-000001")["result"]
    assert len(exact) == 1
    assert lower == ([] if case_sensitive else exact)
    # The compound role key too, through the JSON input form.
    key = {"externalOpportunityId": "opportunity1", "leadId": 1, "role": "CAPTAIN"}
    body = session.post(sb.base_url + ROLES + "?_method=GET", json={"input": [key]}, timeout=10).json()
    assert [r["role"] for r in body["result"]] == ([] if case_sensitive else ["Captain"])


@pytest.mark.parametrize("trimmed", [False, True])
def test_whitespace_around_filter_value_commas_is_kept_or_dropped_as_configured(
    make_sandbox: MakeSandbox, trimmed: bool
) -> None:
    sb = make_sandbox(rate_limit=None, filter_values_trimmed=trimmed)
    session = _session(sb)
    body = _query(sb, session, OPP, filterType="externalOpportunityId", filterValues="OPP-000001, OPP-000002")
    found = [r["externalOpportunityId"] for r in body["result"]]
    assert found == (["OPP-000001", "OPP-000002"] if trimmed else ["OPP-000001"])


@pytest.mark.parametrize(
    ("mode", "with_header", "alone"),
    [("refused", "601", "601"), ("ignored", None, "601"), ("accepted", None, None)],
)
def test_access_token_query_parameter_is_treated_as_configured(
    make_sandbox: MakeSandbox, mode: str, with_header: str | None, alone: str | None
) -> None:
    sb = make_sandbox(rate_limit=None, legacy_param_auth=mode)
    session = _session(sb)
    token = session.headers["Authorization"].split(" ", 1)[1]
    describe = sb.base_url + "/rest/v1/opportunities/describe.json"
    beside = session.get(describe, params={"access_token": token}, timeout=10).json()
    bare = requests.get(describe, params={"access_token": token}, timeout=10).json()
    assert [_code_of(beside), _code_of(bare)] == [with_header, alone]


def _code_of(body: dict[str, Any]) -> str | None:
    return None if body["success"] else str(body["errors"][0]["code"])


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        ("idField", {"marketoGUID"}),
        ("keys", {"marketoGUID", "externalOpportunityId", "leadId", "role"}),
        ("defaults", {"marketoGUID", "externalOpportunityId", "leadId", "role", "createdAt", "updatedAt"}),
    ],
)
def test_query_with_fields_adds_what_is_configured(
    make_sandbox: MakeSandbox, mode: str, extra: set[str]
) -> None:
    sb = make_sandbox(rate_limit=None, query_fields_added=mode)
    rows = _query(sb, _session(sb), ROLES, filterType="leadId", filterValues="1872", fields="isPrimary")[
        "result"
    ]
    assert rows
    assert all(set(r) - {"seq", "isPrimary"} == extra for r in rows)


def test_ambiguity_switches_are_validated_and_runtime_configurable(make_sandbox: MakeSandbox) -> None:
    from marketo_sandbox import SandboxConfig
    from marketo_sandbox.cli import build_parser, config_from_args

    for bad in ({"legacy_param_auth": "maybe"}, {"query_fields_added": "all"}, {"sales_person_check": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SandboxConfig(**bad)
    sb = make_sandbox(rate_limit=None)
    sb.configure(filter_case_sensitive=False, filter_values_trimmed=True, legacy_param_auth="ignored")
    assert sb.config.filter_case_sensitive is False
    with pytest.raises(ValueError, match="query_fields_added"):
        sb.configure(query_fields_added="nope")
    flags = "--filter-case-insensitive --filter-values-trimmed --legacy-param-auth accepted --spec-complete"
    more = "--query-fields-added keys --sales-person-check record"
    args = build_parser().parse_args(
        ["--port", "0", "--client-id", "a", "--client-secret", "b", *f"{flags} {more}".split()]
    )
    cfg = config_from_args(args)
    assert (cfg.filter_case_sensitive, cfg.filter_values_trimmed, cfg.legacy_param_auth) == (
        False,
        True,
        "accepted",
    )
    assert (cfg.query_fields_added, cfg.sales_person_check, cfg.spec_complete) == ("keys", "record", True)


@pytest.mark.parametrize("case_sensitive", [True, False])
def test_sync_and_delete_keys_follow_the_same_case_rule(
    make_sandbox: MakeSandbox, case_sensitive: bool
) -> None:
    """A Marketo whose filters ignore case dedupes the same way; both variants stay consistent."""
    sb = make_sandbox(rate_limit=None, filter_case_sensitive=case_sensitive)
    session = _session(sb)
    before = len(sb.store.opportunities())
    roles_of_1 = [r for r in sb.store.roles() if r["externalOpportunityId"] == "OPP-000001"]
    assert roles_of_1
    synced = session.post(
        sb.base_url + OPP,
        json={"input": [{"externalOpportunityId": "opp-000001", "name": "lower"}]},
        timeout=10,
    ).json()
    assert synced["result"][0]["status"] == ("created" if case_sensitive else "updated")
    assert len(sb.store.opportunities()) == before + (1 if case_sensitive else 0)
    deleted = session.post(
        sb.base_url + "/rest/v1/opportunities/delete.json",
        json={"input": [{"externalOpportunityId": "opp-000001"}]},
        timeout=10,
    ).json()
    assert deleted["result"][0]["status"] == "deleted"
    assert (sb.store.opportunity("OPP-000001") is None) is (not case_sensitive)
    left = [r for r in sb.store.roles() if r["externalOpportunityId"] == "OPP-000001"]
    assert left == (roles_of_1 if case_sensitive else [])


def test_a_variant_from_the_environment_changes_the_test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from marketo_sandbox import SandboxConfig
    from marketo_sandbox.config import VARIANT_ENV

    monkeypatch.setenv(VARIANT_ENV, '{"filter_case_sensitive": false, "query_fields_added": "keys"}')
    cfg = SandboxConfig.small(query_fields_added="defaults")
    assert (cfg.filter_case_sensitive, cfg.query_fields_added, cfg.leads) == (False, "defaults", 60)
    monkeypatch.setenv(VARIANT_ENV, "[1]")
    with pytest.raises(ValueError, match=VARIANT_ENV):
        SandboxConfig.small()
