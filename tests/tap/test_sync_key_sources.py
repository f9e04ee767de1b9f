"""tap-marketo-opps against the sandbox: each key source reads exactly its records, under each reading.

Every test compares what the tap emitted with the sandbox's own store (`sb.store`), so a
missing, extra or mistyped record fails the test. Sandboxes use a 1 s rate window (and the
tap the same) so the real 100-calls-per-window limit stays on without slowing the tests.
The fixtures `sb`, `catalog` and `own_sandbox` are in tests/tap/conftest.py.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marketo_sandbox import Sandbox
from tap_marketo_opps.streams import SyncStoppedError
from tap_marketo_opps.testing import discover, run_tap, select
from tests.support.tap import (
    DATA,
    OPPS,
    RECORD_STREAMS,
    ROLES,
    emitted,
    expected_for_leads,
    expected_for_opportunities,
    records_only,
    small,
    start,
    tap_config,
)

# ---- key sources -------------------------------------------------------------------------------


def test_lead_id_range_emits_every_role_and_each_linked_opportunity_once(sb: Sandbox) -> None:
    run = run_tap(tap_config(sb, lead_id_range={"start": 1, "end": 2000}))
    assert emitted(run) == expected_for_leads(sb, range(1, 2001))
    assert run.records("opportunity_fields")
    assert run.records("opportunity_role_fields")


def test_lead_ids_list(sb: Sandbox, catalog: dict[str, Any]) -> None:
    leads = [1, 2, 3, 5, 8, 13, 21, 34, 1872, 456783, 999999]
    run = run_tap(tap_config(sb, lead_ids=leads), catalog=records_only(catalog))
    assert emitted(run) == expected_for_leads(sb, leads)
    assert expected_for_leads(sb, leads)[ROLES], "the sandbox should hold roles for these leads"


@pytest.mark.parametrize(
    "content",
    [
        "1\n2\n3\n\n40\n",  # one value a line, blank line skipped
        "leadId\n1\n2\n3\n40\n",  # one-column file with a header
        "email,lead_id,name\na@x.test,1,A\nb@x.test,2,B\nc@x.test,3,C\nd@x.test,40,D\n",  # CSV
        "name;LeadId\nA;1\nB;2\nC;3\nD;40\n",  # other delimiter and spelling
    ],
    ids=["plain", "header", "csv", "semicolon"],
)
def test_lead_ids_file(sb: Sandbox, catalog: dict[str, Any], tmp_path: Path, content: str) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(content)
    run = run_tap(tap_config(sb, lead_ids_file=str(path)), catalog=records_only(catalog))
    assert emitted(run) == expected_for_leads(sb, [1, 2, 3, 40])


def test_external_opportunity_ids_list_and_file(sb: Sandbox, catalog: dict[str, Any]) -> None:
    listed = ["OPP-000003", "OPP-000004", "19UYA31581L000000", "NOT-THERE"]
    from_file = [line.split(",")[1] for line in (DATA / "opportunities.csv").read_text().splitlines()[1:]]
    run = run_tap(
        tap_config(
            sb, external_opportunity_ids=listed, external_opportunity_ids_file=str(DATA / "opportunities.csv")
        ),
        catalog=records_only(catalog),
    )
    wanted = set(listed) | set(from_file)
    assert emitted(run) == expected_for_opportunities(sb, lambda o: o["externalOpportunityId"] in wanted)
    assert len(from_file) == 12


def test_plain_file_of_external_ids(sb: Sandbox, catalog: dict[str, Any]) -> None:
    path = DATA / "opportunity_ids.txt"
    wanted = {line.strip() for line in path.read_text().splitlines()[1:] if line.strip()}
    run = run_tap(tap_config(sb, external_opportunity_ids_file=str(path)), catalog=records_only(catalog))
    assert emitted(run) == expected_for_opportunities(sb, lambda o: o["externalOpportunityId"] in wanted)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"object": "opportunity", "field": "externalCompanyId", "values": ["CMP-0001", "CMP-0003"]},
            lambda o: o.get("externalCompanyId") in ("CMP-0001", "CMP-0003"),
        ),
        (
            {"object": "opportunity", "field": "region", "values": ["EMEA"]},
            lambda o: o.get("region") == "EMEA",
        ),
        (
            {"object": "opportunity", "field": "partnerTier", "values": [2, 3]},
            lambda o: o.get("partnerTier") in (2, 3),
        ),
    ],
    ids=["externalCompanyId", "custom-string", "custom-integer"],
)
def test_filters_on_opportunity_fields(
    sb: Sandbox, catalog: dict[str, Any], spec: dict[str, Any], expected: Any
) -> None:
    run = run_tap(tap_config(sb, filters=[spec]), catalog=records_only(catalog))
    want = expected_for_opportunities(sb, expected)
    assert want[OPPS], "the filter should match something in the sandbox"
    assert emitted(run) == want


def test_filter_on_role_field(sb: Sandbox, catalog: dict[str, Any]) -> None:
    spec = {"object": "opportunity_role", "field": "leadId", "values": [4, 5, 6]}
    run = run_tap(tap_config(sb, filters=[spec]), catalog=records_only(catalog))
    assert emitted(run) == expected_for_leads(sb, [4, 5, 6])


def test_several_sources_emit_each_opportunity_once(sb: Sandbox, catalog: dict[str, Any]) -> None:
    leads = list(range(1, 31))
    ext_ids = sorted({r["externalOpportunityId"] for r in sb.store.roles() if r["leadId"] in leads})[:5]
    run = run_tap(
        tap_config(sb, lead_ids=leads, external_opportunity_ids=ext_ids), catalog=records_only(catalog)
    )
    assert run.error is None
    opp_guids = [r["marketoGUID"] for r in run.records(OPPS)]
    assert len(opp_guids) == len(set(opp_guids))
    want = expected_for_leads(sb, leads)
    assert set(opp_guids) == want[OPPS]


def overlapping_sources(sb: Sandbox) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Settings whose sources reach the same opportunities and roles several times, and the union."""
    opp = next(o for o in sb.store.opportunities() if o.get("externalCompanyId"))
    eid, company = opp["externalOpportunityId"], opp["externalCompanyId"]
    leads = sorted({r["leadId"] for r in sb.store.roles() if r["externalOpportunityId"] == eid})
    assert leads, "the sandbox should hold roles for this opportunity"
    settings = {
        "external_opportunity_ids": [eid],
        "lead_ids": leads,
        "filters": [
            {"object": "opportunity", "field": "externalCompanyId", "values": [company]},
            {"object": "opportunity_role", "field": "leadId", "values": leads[:2]},
        ],
    }
    by_lead = expected_for_leads(sb, leads)
    by_opp = expected_for_opportunities(
        sb, lambda o: o["externalOpportunityId"] == eid or o.get("externalCompanyId") == company
    )
    # The overlap is real: these roles are reached both by their lead and by their opportunity.
    assert by_lead[ROLES] & by_opp[ROLES]
    want = {stream: by_lead[stream] | by_opp[stream] for stream in RECORD_STREAMS}
    return settings, want


@pytest.mark.parametrize("streams", [RECORD_STREAMS, [ROLES]], ids=["both", "roles-only"])
def test_overlapping_sources_emit_each_role_and_opportunity_once(
    sb: Sandbox, catalog: dict[str, Any], streams: list[str]
) -> None:
    settings, want = overlapping_sources(sb)
    run = run_tap(tap_config(sb, **settings), catalog=select(catalog, streams))
    got = emitted(run)  # fails if any record was emitted twice
    for stream in RECORD_STREAMS:
        assert got[stream] == (want[stream] if stream in streams else set())


def test_overlapping_sources_after_a_stop_and_resume(sb: Sandbox, catalog: dict[str, Any]) -> None:
    """Each run emits a record at most once; the two runs together emit everything."""
    settings, want = overlapping_sources(sb)
    config = tap_config(sb, **settings, max_concurrent_requests=1)
    chosen = records_only(catalog)
    first = run_tap({**config, "daily_call_budget": 3}, catalog=chosen)
    assert isinstance(first.error, SyncStoppedError)
    emitted_first = {stream: first.guids(stream) for stream in RECORD_STREAMS}
    for stream in RECORD_STREAMS:
        guids = [r["marketoGUID"] for r in first.records(stream)]
        assert len(guids) == len(set(guids)), f"{stream}: a record was emitted twice in the stopped run"
    second = run_tap(config, catalog=chosen, state=first.last_state)
    got = emitted(second)  # the resumed run starts a new seen-set but emits nothing twice itself
    assert {stream: emitted_first[stream] | got[stream] for stream in RECORD_STREAMS} == want


def test_key_file_with_quoted_values(sb: Sandbox, catalog: dict[str, Any], tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_bytes(b'\xef\xbb\xbfleadId\r\n"4"\r\n"5"\r\n\r\n')
    ids = tmp_path / "ids.csv"
    ids.write_text('externalOpportunityId\n"OPP-000003"\n" OPP-000004 "\n')
    run = run_tap(
        tap_config(sb, lead_ids_file=str(leads), external_opportunity_ids_file=str(ids)),
        catalog=records_only(catalog),
    )
    by_lead = expected_for_leads(sb, [4, 5])
    by_opp = expected_for_opportunities(
        sb, lambda o: o["externalOpportunityId"] in ("OPP-000003", "OPP-000004")
    )
    assert by_opp[OPPS]
    assert by_lead[ROLES]
    assert emitted(run) == {stream: by_lead[stream] | by_opp[stream] for stream in RECORD_STREAMS}


def test_lead_with_more_than_300_roles(sb: Sandbox, catalog: dict[str, Any]) -> None:
    counts = Counter(r["leadId"] for r in sb.store.roles())
    heavy = max(counts, key=lambda lead: counts[lead])
    assert counts[heavy] > 300
    run = run_tap(tap_config(sb, lead_ids=[heavy]), catalog=records_only(catalog))
    assert emitted(run) == expected_for_leads(sb, [heavy])
    assert len(run.records(ROLES)) == counts[heavy]
    figures = run.tap.call_figures
    assert figures["key_batch_queries"] == 1
    assert figures["extra_pages"] >= 1


def test_300_long_ids_need_no_414(sb: Sandbox, catalog: dict[str, Any]) -> None:
    real = [o["externalOpportunityId"] for o in sb.store.opportunities()][:20]
    padding = [f"LONG-{i:04d}-" + "x" * 40 for i in range(300 - len(real))]
    assert all(len(v) == 50 for v in padding)
    before = sb.stats()["http_status"].get("414", 0)
    run = run_tap(tap_config(sb, external_opportunity_ids=real + padding), catalog=records_only(catalog))
    assert emitted(run) == expected_for_opportunities(sb, lambda o: o["externalOpportunityId"] in set(real))
    assert sb.stats()["http_status"].get("414", 0) == before
    assert run.tap.call_figures["key_batch_queries"] == 1


# ---- settings and their errors -------------------------------------------------------------------


def test_no_key_source_warns_and_emits_field_metadata(sb: Sandbox) -> None:
    run = run_tap(tap_config(sb))
    assert run.error is None
    assert not run.records(OPPS)
    assert run.records("opportunity_fields")


def test_config_errors_name_the_setting(sb: Sandbox, tmp_path: Path) -> None:
    from singer_sdk.exceptions import ConfigValidationError

    with pytest.raises(ConfigValidationError, match="lead_id_range"):
        run_tap(tap_config(sb, lead_id_range={"start": 10, "end": 2}))
    with pytest.raises(ConfigValidationError) as raised:
        run_tap(tap_config(sb, filters=[{"object": "lead", "field": "x", "values": [1]}]))
    assert any("lead" in error for error in raised.value.errors)
    missing = run_tap(tap_config(sb, lead_ids_file=str(tmp_path / "missing.csv")))
    assert missing.error is not None
    assert "lead_ids_file" in str(missing.error)
    bad = tmp_path / "bad.csv"
    bad.write_text("leadId\n1\nabc\n")
    broken = run_tap(tap_config(sb, lead_ids_file=str(bad)), catalog=None)
    assert broken.error is not None
    assert "abc" in str(broken.error)


def test_settings_have_titles_and_descriptions() -> None:
    from tap_marketo_opps.tap import TapMarketoOpps

    props = TapMarketoOpps.config_jsonschema["properties"]
    for name, prop in props.items():
        assert prop.get("title"), name
        assert prop.get("description"), name
    assert json.loads(json.dumps(props)) == props  # plain JSON: no tuples, sets or objects


# ---- under each plausible answer to what Marketo's docs leave open ---------------------------


@pytest.mark.parametrize(
    "behaviour",
    [{"trailing_empty_page": True}, {"emit_more_result": False}],
    ids=["trailing-empty", "no-moreResult"],
)
def test_paging_variants_return_every_role(own_sandbox: list[Sandbox], behaviour: dict[str, bool]) -> None:
    sb = start(own_sandbox, small(**behaviour))
    counts = Counter(r["leadId"] for r in sb.store.roles())
    heavy = max(counts, key=lambda lead: counts[lead])
    run = run_tap(tap_config(sb, lead_ids=[heavy, 1, 2]), catalog=records_only(discover(tap_config(sb))))
    assert emitted(run) == expected_for_leads(sb, [heavy, 1, 2])


READING_VARIANTS = {
    "default": {},
    "case-insensitive": {"filter_case_sensitive": False},
    "trimmed-commas": {"filter_values_trimmed": True},
    "fields-add-keys": {"query_fields_added": "keys"},
    "fields-add-defaults-spec-complete": {
        "query_fields_added": "defaults",
        "spec_complete": True,
        "legacy_param_auth": "accepted",
    },
}


@pytest.fixture(scope="module", params=sorted(READING_VARIANTS))
def variant_sb(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(small(**READING_VARIANTS[request.param])) as sandbox:
        yield sandbox


def test_every_key_source_reads_the_same_records_under_each_variant(variant_sb: Sandbox) -> None:
    sb = variant_sb
    leads = list(range(1, 25))
    ext_ids = ["OPP-000003", "19UYA31581L000000", "NOT-THERE"]
    region = {"object": "opportunity", "field": "region", "values": ["EMEA"]}
    run = run_tap(tap_config(sb, lead_ids=leads, external_opportunity_ids=ext_ids, filters=[region]))
    by_leads = expected_for_leads(sb, leads)
    by_opps = expected_for_opportunities(
        sb, lambda o: o["externalOpportunityId"] in ext_ids or o.get("region") == "EMEA"
    )
    assert emitted(run) == {s: by_leads[s] | by_opps[s] for s in RECORD_STREAMS}
    assert by_opps[ROLES]
    assert by_leads[ROLES]


def test_deselected_properties_stay_out_whatever_marketo_adds(variant_sb: Sandbox) -> None:
    sb = variant_sb
    catalog = discover(tap_config(sb))
    chosen = select(
        catalog,
        RECORD_STREAMS,
        deselect_properties={
            OPPS: ["description", "createdAt"],
            ROLES: ["isPrimary", "createdAt", "leadId", "externalOpportunityId"],
        },
    )
    leads = [1, 2, 3, 1872]
    run = run_tap(tap_config(sb, lead_ids=leads), catalog=chosen)
    assert emitted(run) == expected_for_leads(sb, leads)
    for stream, gone in (
        (OPPS, {"description", "createdAt"}),
        (ROLES, {"isPrimary", "createdAt", "leadId", "externalOpportunityId"}),
    ):
        records = run.records(stream)
        assert records
        assert all(not gone & set(r) for r in records), stream
    assert all("name" in r for r in run.records(OPPS))


def test_key_case_reads_what_marketo_matches(variant_sb: Sandbox) -> None:
    sb = variant_sb
    run = run_tap(tap_config(sb, external_opportunity_ids=["opp-000003", "OPP-000004"]))
    matches = {"OPP-000004"} if sb.config.filter_case_sensitive else {"OPP-000003", "OPP-000004"}
    assert emitted(run) == expected_for_opportunities(sb, lambda o: o["externalOpportunityId"] in matches)
