"""The sandbox's seed data, store helpers, config objects and CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from marketo_sandbox import DEFAULT_CUSTOM_FIELDS, CustomField, Fault, Sandbox, SandboxConfig
from marketo_sandbox.schema import coerce, opportunity_schema, role_schema
from marketo_sandbox.seed import DOC_LEAD_IDS, build


def test_seed_is_deterministic_and_consistent() -> None:
    cfg = SandboxConfig.small()
    leads, opps, roles = build(cfg)
    leads2, opps2, roles2 = build(SandboxConfig.small())
    assert (leads, opps, roles) == (leads2, opps2, roles2)
    _, other_opps, _ = build(SandboxConfig.small(seed=8))
    assert other_opps[5:] != opps[5:]

    assert set(leads) == set(range(1, 61)) | set(DOC_LEAD_IDS)
    assert len(opps) == 40 + 5
    generated = [o for o in opps if o["externalOpportunityId"].startswith("OPP-")]
    assert [o["externalOpportunityId"] for o in generated] == [f"OPP-{i:06d}" for i in range(1, 41)]
    guids = [o["marketoGUID"] for o in opps] + [r["marketoGUID"] for r in roles]
    assert len(set(guids)) == len(guids)
    assert all(len(g) == 36 and g[14] == "4" for g in guids)

    # Every role points at an existing opportunity and lead; compound keys are unique.
    opp_ids = {o["externalOpportunityId"] for o in opps}
    assert all(r["externalOpportunityId"] in opp_ids and r["leadId"] in set(leads) for r in roles)
    keys = [(r["externalOpportunityId"], r["leadId"], r["role"]) for r in roles]
    assert len(set(keys)) == len(keys)
    per_lead = Counter(r["leadId"] for r in roles)
    assert per_lead[60] == 350  # the heavy lead
    assert max(c for lead, c in per_lead.items() if lead != 60) < 300
    primaries = Counter(r["externalOpportunityId"] for r in roles if r.get("isPrimary"))
    assert max(primaries.values()) == 1
    normal = [r for r in roles if r["leadId"] != 60 and r["externalOpportunityId"].startswith("OPP-")]
    assert 40 <= len(normal) <= 40 * 6
    assert {r["role"] for r in normal} <= {
        "Decision Maker",
        "Technical Buyer",
        "Economic Buyer",
        "Champion",
        "Influencer",
        "End User",
    }

    companies = {o["externalCompanyId"] for o in generated}
    assert companies <= {f"CMP-{i:04d}" for i in range(1, 9)}
    assert len(companies) > 1
    assert all(o["externalSalesPersonId"].startswith("SP-") for o in generated)
    assert all("2024-01-01" <= o["createdAt"] <= o["updatedAt"] <= "2026-06-30T23:59:59Z" for o in generated)


def test_seed_values_round_trip_through_validation() -> None:
    """Every seeded value is already in the representation the API stores and returns."""
    cfg = SandboxConfig.small()
    _, opps, roles = build(cfg)
    schema = opportunity_schema(cfg.custom_fields)
    seen_fields: set[str] = set()
    for opp in opps:
        for name, value in opp.items():
            fdef = schema.by_name[name]
            assert coerce(fdef, value) == value, (name, value)
            seen_fields.add(name)
    assert seen_fields == set(schema.by_name)  # every field, custom ones included, has seed values
    rschema = role_schema()
    for role in roles[:50]:
        for name, value in role.items():
            assert coerce(rschema.by_name[name], value) == value


def test_doc_examples_can_be_left_out_and_store_helpers() -> None:
    sb = Sandbox(
        SandboxConfig(
            leads=5, opportunities=3, roles_per_opportunity=1, heavy_leads=0, include_doc_examples=False
        )
    )
    assert sb.store.lead_ids() == [1, 2, 3, 4, 5]
    assert [o["externalOpportunityId"] for o in sb.store.opportunities()] == [
        "OPP-000001",
        "OPP-000002",
        "OPP-000003",
    ]
    assert sb.store.opportunity("19UYA31581L000000") is None
    sb.store.add_leads([1000, 1001])
    assert sb.store.lead_ids()[-2:] == [1000, 1001]
    sb.store.clear()
    assert sb.store.opportunities() == []
    assert sb.store.roles() == []
    assert len(sb.store.lead_ids()) == 7
    sb.store.clear(leads=True)
    assert sb.store.lead_ids() == []


def test_heavy_lead_with_few_opportunities_keeps_keys_unique() -> None:
    _, _, roles = build(SandboxConfig(leads=10, opportunities=7, heavy_leads=2, heavy_lead_roles=400))
    heavy = [r for r in roles if r["leadId"] in (9, 10)]
    assert len(heavy) == 800
    keys = {(r["externalOpportunityId"], r["leadId"], r["role"]) for r in heavy}
    assert len(keys) == 800


def test_config_objects() -> None:
    small = SandboxConfig.small()
    assert (small.leads, small.opportunities, small.roles_per_opportunity, small.heavy_leads) == (
        60,
        40,
        3,
        1,
    )
    assert (small.rate_limit, small.rate_window_seconds, small.concurrency_limit) == (100, 20.0, 10)
    assert SandboxConfig.small(leads=5).leads == 5
    assert {c.data_type for c in DEFAULT_CUSTOM_FIELDS} >= {"string", "integer", "float", "email", "formula"}
    assert Fault.parse("606:0.2") == Fault(kind="606", rate=0.2)
    assert Fault.parse("http502@3,4") == Fault(kind="http502", calls=[3, 4])
    assert Fault.parse("604@1+after") == Fault(kind="604", calls=[1], after_apply=True)
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="999")
    with pytest.raises(ValueError, match="searchable"):
        CustomField("score2", "float", searchable=True)
    with pytest.raises(ValueError, match="clashes"):
        opportunity_schema([CustomField("Amount", "string")])
    sb = Sandbox(SandboxConfig.small(opportunities=2))
    with pytest.raises(ValueError, match="cannot be changed"):
        sb.configure(seed=3)
    with pytest.raises(ValueError, match="unknown config field"):
        sb.configure(rate=3)


def test_custom_fields_are_configurable() -> None:
    fields = [CustomField("segment", "string", 20, searchable=True), CustomField("seats", "integer")]
    with Sandbox(SandboxConfig.small(custom_fields=fields)) as sb:
        token = sb.issue_token()
        headers = {"Authorization": f"Bearer {token}"}
        desc = requests.get(
            sb.base_url + "/rest/v1/opportunities/describe.json", headers=headers, timeout=10
        ).json()
        names = [f["name"] for f in desc["result"][0]["fields"]]
        assert names[-2:] == ["segment", "seats"]
        assert "region" not in names
        assert ["segment"] in desc["result"][0]["searchableFields"]
        segment = sb.store.opportunities()[10]["segment"]
        found = requests.get(
            sb.base_url + "/rest/v1/opportunities.json",
            params={"filterType": "segment", "filterValues": segment, "fields": "segment,seats"},
            headers=headers,
            timeout=10,
        ).json()["result"]
        assert found
        assert all(r["segment"] == segment and isinstance(r["seats"], int) for r in found)


def test_cli_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketo_sandbox",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--client-id",
            "cli-id",
            "--client-secret",
            "cli-very-secret",
            "--leads",
            "20",
            "--opportunities",
            "10",
            "--rate-limit",
            "50",
            "--rate-window",
            "2",
            "--fault",
            "608@2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        port = int(port_file.read_text().strip())
        assert line == f"marketo-sandbox listening on http://127.0.0.1:{port}"
        base = f"http://127.0.0.1:{port}"
        tok = requests.get(
            base + "/identity/oauth/token",
            params={
                "grant_type": "client_credentials",
                "client_id": "cli-id",
                "client_secret": "cli-very-secret",
            },
            timeout=10,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {tok}"}
        url = base + "/rest/v1/opportunities.json"
        params = {"filterType": "externalOpportunityId", "filterValues": "OPP-000010,OPP-000011"}
        assert len(requests.get(url, params=params, headers=headers, timeout=10).json()["result"]) == 1
        assert (
            requests.get(url, params=params, headers=headers, timeout=10).json()["errors"][0]["code"] == "608"
        )
        cfg = requests.get(base + "/_sandbox/config", timeout=10).json()
        assert (cfg["rate_limit"], cfg["rate_window_seconds"], cfg["leads"]) == (50, 2.0, 20)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.returncode == 0
        out, err = proc.communicate(timeout=5)
        assert "cli-very-secret" not in line + out + err
        assert out.strip() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
