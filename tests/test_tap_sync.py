"""tap-marketo-opps against the Marketo sandbox over HTTP: exact record sets, types, state, calls.

Every test compares what the tap emitted with the sandbox's own store (`sb.store`), so a
missing, extra or mistyped record fails the test. Sandboxes use a 1 s rate window (and the
tap the same) so the real 100-calls-per-window limit stays on without slowing the tests.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketo_api import MarketoClient, MarketoObject, MarketoSettings
from marketo_sandbox import DEFAULT_CUSTOM_FIELDS, CustomField, Fault, Sandbox, SandboxConfig
from tap_marketo_opps.schemas import LOGGED_UNREADABLE_PER_FIELD
from tap_marketo_opps.streams import SyncStoppedError
from tap_marketo_opps.testing import TapRun, discover, run_tap, select

DATA = Path(__file__).parent / "data" / "tap"
WINDOW = 1.0
OPPS = "opportunities"
ROLES = "opportunity_roles"
RECORD_STREAMS = [OPPS, ROLES]


def small(**overrides: Any) -> SandboxConfig:
    return SandboxConfig.small(rate_window_seconds=WINDOW, **overrides)


def bigger(**overrides: Any) -> SandboxConfig:
    """Enough leads for several key batches that all hold records."""
    values: dict[str, Any] = {"leads": 1500, "opportunities": 400, "rate_window_seconds": WINDOW}
    values.update(overrides)
    return SandboxConfig.small(**values)


def tap_config(sb: Sandbox, **settings: Any) -> dict[str, Any]:
    return {**sb.connection_settings(), "rate_window_seconds": WINDOW, "max_retry_seconds": 60, **settings}


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    """A shared read-only sandbox (tests that change data or faults start their own)."""
    with Sandbox(small()) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def catalog(sb: Sandbox) -> dict[str, Any]:
    return discover(tap_config(sb))


@pytest.fixture
def own_sandbox() -> Iterator[list[Sandbox]]:
    started: list[Sandbox] = []
    yield started
    for sandbox in started:
        sandbox.stop()


def start(started: list[Sandbox], config: SandboxConfig) -> Sandbox:
    sandbox = Sandbox(config).start()
    started.append(sandbox)
    return sandbox


# ---- expected sets, from the sandbox's store ---------------------------------------------------


def expected_for_leads(sb: Sandbox, leads: Iterable[int], since: str = "") -> dict[str, set[str]]:
    wanted = set(leads)
    roles = [r for r in sb.store.roles() if r["leadId"] in wanted]
    opp_ids = {r["externalOpportunityId"] for r in roles}
    opps = [o for o in sb.store.opportunities() if o["externalOpportunityId"] in opp_ids]
    return {
        OPPS: {o["marketoGUID"] for o in opps if o["updatedAt"] >= since},
        ROLES: {r["marketoGUID"] for r in roles if r["updatedAt"] >= since},
    }


def expected_for_opportunities(sb: Sandbox, predicate: Any) -> dict[str, set[str]]:
    opps = [o for o in sb.store.opportunities() if predicate(o)]
    ids = {o["externalOpportunityId"] for o in opps}
    return {
        OPPS: {o["marketoGUID"] for o in opps},
        ROLES: {r["marketoGUID"] for r in sb.store.roles() if r["externalOpportunityId"] in ids},
    }


def emitted(run: TapRun) -> dict[str, set[str]]:
    assert run.error is None, run.error
    for stream in RECORD_STREAMS:
        guids = [r["marketoGUID"] for r in run.records(stream)]
        assert len(guids) == len(set(guids)), f"{stream}: a record was emitted twice"
    return {stream: run.guids(stream) for stream in RECORD_STREAMS}


def union(*runs: TapRun) -> dict[str, set[str]]:
    return {stream: set().union(*(run.guids(stream) for run in runs)) for stream in RECORD_STREAMS}


def checkpoint(run: TapRun) -> dict[str, Any]:
    return run.last_state["bookmarks"]["key_batches"]["checkpoint"]


def records_only(catalog: dict[str, Any]) -> dict[str, Any]:
    return select(catalog, RECORD_STREAMS)


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


# ---- types ---------------------------------------------------------------------------------------

_JSON_TYPE = {
    "string": "string",
    "text": "string",
    "email": "string",
    "phone": "string",
    "url": "string",
    "reference": "string",
    "integer": "integer",
    "score": "integer",
    "percent": "integer",
    "float": "number",
    "currency": "number",
    "boolean": "boolean",
    "date": "string",
    "datetime": "string",
}


def _expected_value(data_type: str, value: Any) -> Any:
    if value is None:
        return None
    if data_type in ("integer", "score", "percent"):
        return int(value)
    if data_type in ("float", "currency"):
        return Decimal(str(value))
    if data_type == "datetime":
        assert value.endswith("Z")
        return value[:-1] + "+00:00"
    if data_type in ("boolean", "date"):
        return value
    return value if isinstance(value, str) else str(value)


def test_schema_types_follow_marketo_data_types(sb: Sandbox, catalog: dict[str, Any]) -> None:
    entries = {e["tap_stream_id"]: e for e in catalog["streams"]}
    assert "key_batches" not in entries
    for stream, described in ((OPPS, sb.store.opportunity_schema), (ROLES, sb.store.role_schema)):
        entry = entries[stream]
        assert entry["key_properties"] == ["marketoGUID"]
        assert entry["replication_key"] == "updatedAt"
        props = entry["schema"]["properties"]
        assert set(props) == {f.name for f in described.fields}
        for fdef in described.fields:
            prop = props[fdef.name]
            json_type = _JSON_TYPE.get(fdef.data_type, "string")  # unknown dataType: a string
            assert json_type in prop["type"], (fdef.name, fdef.data_type, prop)
            assert prop.get("format") == {"date": "date", "datetime": "date-time"}.get(fdef.data_type)
            if fdef.length is not None and fdef.data_type in ("string", "email", "phone", "url", "reference"):
                assert prop["maxLength"] == fdef.length


def test_values_are_coerced_by_data_type(sb: Sandbox, catalog: dict[str, Any]) -> None:
    opps = sb.store.opportunities()
    run = run_tap(
        tap_config(sb, external_opportunity_ids=[o["externalOpportunityId"] for o in opps]),
        catalog=records_only(catalog),
    )
    by_guid = {r["marketoGUID"]: r for r in run.records(OPPS)}
    assert len(by_guid) == len(opps)
    fields = sb.store.opportunity_schema.fields
    seen_types = set()
    for raw in opps:
        record = by_guid[raw["marketoGUID"]]
        assert set(record) == {f.name for f in fields}  # unset fields arrive as null
        for fdef in fields:
            expected = _expected_value(fdef.data_type, raw.get(fdef.name))
            assert record[fdef.name] == expected, (fdef.name, fdef.data_type, raw.get(fdef.name))
            assert type(record[fdef.name]) is type(expected), (fdef.name, record[fdef.name])
            if raw.get(fdef.name) is not None:
                seen_types.add(fdef.data_type)
    assert seen_types >= set(_JSON_TYPE) | {"formula"}  # every dataType, custom fields included
    # Currency is exact: the JSON text carries the decimal as Marketo wrote it.
    chairs = next(o for o in opps if o["externalOpportunityId"] == "19UYA31581L000000")
    assert chairs["amount"] == "1604.47"
    assert '"amount":1604.47,' in run.stdout
    roles = {r["marketoGUID"]: r for r in run.records(ROLES)}
    for raw in sb.store.roles():
        if raw["marketoGUID"] in roles:
            record = roles[raw["marketoGUID"]]
            assert record["leadId"] == raw["leadId"]
            assert record["isPrimary"] is raw.get("isPrimary")
            assert record["updatedAt"] == raw["updatedAt"][:-1] + "+00:00"


def test_deselected_properties_are_not_emitted(sb: Sandbox, catalog: dict[str, Any]) -> None:
    chosen = select(catalog, RECORD_STREAMS, deselect_properties={OPPS: ["description", "amount"]})
    run = run_tap(tap_config(sb, external_opportunity_ids=["OPP-000001", "OPP-000002"]), catalog=chosen)
    records = run.records(OPPS)
    assert len(records) == 2
    for record in records:
        assert "description" not in record
        assert "amount" not in record
        assert "name" in record


# ---- incremental ---------------------------------------------------------------------------------


def test_start_date_filters_by_updated_at(sb: Sandbox, catalog: dict[str, Any]) -> None:
    leads = range(1, 2001)
    stamps = sorted(r["updatedAt"] for r in sb.store.roles())
    since = stamps[len(stamps) // 2]
    run = run_tap(
        tap_config(sb, lead_id_range={"start": 1, "end": 2000}, start_date=since),
        catalog=records_only(catalog),
    )
    want = expected_for_leads(sb, leads, since=since)
    assert emitted(run) == want
    assert want[ROLES] != expected_for_leads(sb, leads)[ROLES], "start_date should drop some roles"
    # Marketo has no updatedAt filter: every key batch is still queried.
    assert run.tap.call_figures["key_batch_queries"] == math.ceil(2000 / 300)


def _update(sb: Sandbox, obj: MarketoObject, records: list[dict[str, Any]]) -> None:
    client = MarketoClient(
        MarketoSettings.from_config({**sb.connection_settings(), "rate_window_seconds": WINDOW})
    )
    with client:
        results = client.sync(obj, records, action="updateOnly")
    assert all(r.status == "updated" for r in results), results


def test_bookmark_emits_only_records_updated_since(own_sandbox: list[Sandbox]) -> None:
    sb = start(own_sandbox, small())
    config = tap_config(sb, lead_id_range={"start": 1, "end": 100})
    chosen = records_only(discover(config))
    first = run_tap(config, catalog=chosen)
    assert emitted(first) == expected_for_leads(sb, range(1, 101))
    bookmarks = first.last_state["bookmarks"]
    changed_opp = sorted(first.records(OPPS), key=lambda r: r["updatedAt"])[0]
    changed_role = sorted(first.records(ROLES), key=lambda r: r["updatedAt"])[0]
    _update(
        sb,
        MarketoObject.OPPORTUNITY,
        [{"externalOpportunityId": changed_opp["externalOpportunityId"], "stage": "Won"}],
    )
    _update(
        sb,
        MarketoObject.OPPORTUNITY_ROLE,
        [{**{k: changed_role[k] for k in ("externalOpportunityId", "leadId", "role")}, "isPrimary": True}],
    )

    second = run_tap(config, catalog=chosen, state=first.last_state)
    for stream, changed in ((OPPS, changed_opp), (ROLES, changed_role)):
        bookmark = bookmarks[stream]["replication_key_value"]
        # The bookmark is inclusive, but records the first run emitted at its very second are not
        # emitted again unless they changed (tap_marketo_opps/streams.py, "at_bookmark").
        want = {r["marketoGUID"] for r in first.records(stream) if r["updatedAt"] > bookmark}
        want.add(changed["marketoGUID"])
        assert second.guids(stream) == want
    assert second.records(OPPS)[0]["stage"] == "Won" or any(r["stage"] == "Won" for r in second.records(OPPS))


# ---- stop and resume -----------------------------------------------------------------------------


def test_resume_after_607_loses_nothing(own_sandbox: list[Sandbox]) -> None:
    sb = start(own_sandbox, bigger())
    leads = range(1, 1501)
    config = tap_config(sb, lead_id_range={"start": 1, "end": 1500}, max_concurrent_requests=1)
    chosen = records_only(discover(config))
    sb.reset_stats()
    sb.configure(daily_quota=7)
    first = run_tap(config, catalog=chosen)
    assert isinstance(first.error, SyncStoppedError)
    assert "607" in str(first.error)
    done = checkpoint(first)["batches_done"]
    assert 1 <= done < 5
    assert first.messages[-1]["type"] == "STATE"  # a stopped run ends with the STATE to resume from
    # STATE never ran ahead of records: every batch up to the checkpoint is fully emitted.
    assert first.guids(ROLES) >= expected_for_leads(sb, range(1, done * 300 + 1))[ROLES]

    sb.configure(daily_quota=None)
    second = run_tap(config, catalog=chosen, state=first.last_state)
    assert union(first, second) == expected_for_leads(sb, leads)
    assert emitted(second)  # no duplicate within the resumed run
    assert second.tap.call_figures["key_batch_queries"] == 5 - done  # done batches are not queried again
    assert "checkpoint" not in second.last_state["bookmarks"]["key_batches"]
    third = run_tap(config, catalog=chosen)  # a finished run starts from the first batch again
    assert emitted(third) == expected_for_leads(sb, leads)


def test_resume_after_daily_call_budget(own_sandbox: list[Sandbox]) -> None:
    sb = start(own_sandbox, bigger())
    leads = range(1, 1501)
    config = tap_config(sb, lead_id_range={"start": 1, "end": 1500}, max_concurrent_requests=1)
    chosen = records_only(discover(config))
    first = run_tap({**config, "daily_call_budget": 6}, catalog=chosen)
    assert isinstance(first.error, SyncStoppedError)
    assert "daily_call_budget" in str(first.error)
    assert first.tap.call_figures["calls"] <= 6
    assert checkpoint(first)["batches_done"] >= 1
    second = run_tap(config, catalog=chosen, state=first.last_state)
    assert union(first, second) == expected_for_leads(sb, leads)


def test_resumed_run_keeps_the_first_runs_start_as_signpost(own_sandbox: list[Sandbox]) -> None:
    """A record updated during a stopped run, in a batch already done, is read by a later run."""
    sb = start(own_sandbox, bigger())
    config = tap_config(sb, lead_id_range={"start": 1, "end": 1500}, max_concurrent_requests=1)
    chosen = records_only(discover(config))
    # Past the first follow-up query, which pools batches 1-3.
    sb.configure(daily_quota=sb.stats()["quota_used"] + 6)
    first = run_tap(config, catalog=chosen)
    assert isinstance(first.error, SyncStoppedError)
    done = checkpoint(first)["batches_done"]
    assert 1 <= done <= 3
    early = next(r for r in first.records(OPPS))  # in a batch that is done
    later_lead = next(r for r in sb.store.roles() if r["leadId"] > 300 * (done + 1) and r["leadId"] < 1400)
    sb.configure(daily_quota=None)
    time.sleep(1.1)
    _update(
        sb,
        MarketoObject.OPPORTUNITY,
        [{"externalOpportunityId": early["externalOpportunityId"], "stage": "A"}],
    )
    time.sleep(1.1)  # B is updated after A, and B is in a batch the resumed run reads
    _update(
        sb,
        MarketoObject.OPPORTUNITY,
        [{"externalOpportunityId": later_lead["externalOpportunityId"], "stage": "B"}],
    )
    second = run_tap(config, catalog=chosen, state=first.last_state)
    assert second.error is None
    assert any(r["stage"] == "B" for r in second.records(OPPS))
    assert second.last_state["bookmarks"][OPPS]["replication_key_value"] <= checkpoint(first)["started_at"]
    third = run_tap(config, catalog=chosen, state=second.last_state)
    assert any(
        r["externalOpportunityId"] == early["externalOpportunityId"] and r["stage"] == "A"
        for r in third.records(OPPS)
    )


def test_changed_key_source_starts_over(own_sandbox: list[Sandbox]) -> None:
    sb = start(own_sandbox, bigger())
    config = tap_config(sb, lead_id_range={"start": 1, "end": 1500}, max_concurrent_requests=1)
    chosen = records_only(discover(config))
    # Past the first follow-up query, which pools batches 1-3.
    sb.configure(daily_quota=sb.stats()["quota_used"] + 6)
    first = run_tap(config, catalog=chosen)
    assert isinstance(first.error, SyncStoppedError)
    assert checkpoint(first)["batches_done"] >= 1
    sb.configure(daily_quota=None)
    other = {**config, "lead_id_range": {"start": 1, "end": 1200}}
    second = run_tap(other, catalog=chosen, state=first.last_state)
    assert emitted(second) == expected_for_leads(sb, range(1, 1201))


# ---- faults, calls, determinism ------------------------------------------------------------------


def test_injected_faults_give_exactly_the_clean_record_set(own_sandbox: list[Sandbox]) -> None:
    sb = start(own_sandbox, bigger())
    config = tap_config(sb, lead_id_range={"start": 1, "end": 1500})
    chosen = records_only(discover(config))
    clean = run_tap(config, catalog=chosen)
    faults = [
        Fault(kind="606", rate=0.1),
        Fault(kind="604", rate=0.1),
        Fault(kind="http502", rate=0.1),
        Fault(kind="drop", rate=0.05),
        Fault(kind="615", rate=0.1),
    ]
    sb.configure(faults=faults)
    faulty = run_tap(config, catalog=chosen)
    assert emitted(faulty) == emitted(clean) == expected_for_leads(sb, range(1, 1501))
    assert [(m["stream"], m["record"]["marketoGUID"]) for m in faulty.messages if m["type"] == "RECORD"] == [
        (m["stream"], m["record"]["marketoGUID"]) for m in clean.messages if m["type"] == "RECORD"
    ]
    assert faulty.tap.call_figures["retries"] > 0
    assert sum(sb.stats()["faults_injected"].values()) > 0


@pytest.mark.parametrize("trailing_empty_page", [False, True], ids=["plain", "token-on-last-page"])
def test_calls_are_the_minimum(own_sandbox: list[Sandbox], trailing_empty_page: bool) -> None:
    sb = start(own_sandbox, bigger(trailing_empty_page=trailing_empty_page))
    config = tap_config(sb, lead_id_range={"start": 1, "end": 1500})
    chosen = records_only(discover(config))
    sb.reset_stats()
    run = run_tap(config, catalog=chosen)
    figures = run.tap.call_figures
    assert figures["describes"] == 0  # a sync given a catalog describes nothing
    assert figures["key_batch_queries"] == math.ceil(1500 / 300)
    assert figures["calls"] == figures["minimum"] == sb.stats()["rest_calls"]
    opp_ids = {r["externalOpportunityId"] for r in sb.store.roles() if r["leadId"] <= 1500}
    assert figures["follow_up_queries"] <= math.ceil(len(opp_ids) / 300) + figures["key_batch_queries"]
    endpoints = sb.stats()["calls_by_endpoint"]
    assert not any("describe" in name for name in endpoints)


def _checkpoints(run: TapRun) -> list[int]:
    points = [s["bookmarks"].get("key_batches", {}).get("checkpoint") for s in run.states]
    return [p["batches_done"] for p in points if p and p["source_index"] == 0]


def test_follow_up_ids_of_sparse_batches_share_one_query(own_sandbox: list[Sandbox]) -> None:
    """Ten key batches that each reach a few dozen new opportunities cost one follow-up query."""
    sb = start(own_sandbox, small(leads=3000, opportunities=150, roles_per_opportunity=2, heavy_leads=0))
    config = tap_config(sb, lead_id_range={"start": 1, "end": 3000})
    run = run_tap(config, catalog=records_only(discover(config)))
    assert emitted(run) == expected_for_leads(sb, range(1, 3001))
    opp_ids = {r["externalOpportunityId"] for r in sb.store.roles() if r["leadId"] <= 3000}
    assert 0 < len(opp_ids) < 300
    figures = run.tap.call_figures
    assert figures["key_batch_queries"] == 10
    assert figures["follow_up_queries"] == 1
    # The pooled ids were found in batch 1, so no checkpoint could be written before the pool
    # was queried, at the last batch.
    assert _checkpoints(run) == [10]


def test_the_follow_up_pool_spans_at_most_twenty_batches(own_sandbox: list[Sandbox]) -> None:
    from tap_marketo_opps.pipeline import FOLLOW_UP_POOL_BATCHES

    sb = start(own_sandbox, small(leads=9000, opportunities=150, roles_per_opportunity=2, heavy_leads=0))
    config = tap_config(sb, lead_id_range={"start": 1, "end": 9000})
    run = run_tap(config, catalog=records_only(discover(config)))
    assert emitted(run) == expected_for_leads(sb, range(1, 9001))
    assert run.tap.call_figures["key_batch_queries"] == 30
    assert run.tap.call_figures["follow_up_queries"] == math.ceil(30 / FOLLOW_UP_POOL_BATCHES)
    points = _checkpoints(run)
    assert points[0] == FOLLOW_UP_POOL_BATCHES  # the pool was queried before the source ended
    assert points == sorted(points)
    assert points[-1] == 30


def test_describe_once_per_object_when_field_streams_run(own_sandbox: list[Sandbox]) -> None:
    sb = start(own_sandbox, small())
    config = tap_config(sb, lead_ids=[1, 2, 3])
    chosen = discover(config)
    sb.reset_stats()
    run = run_tap(
        config, catalog=select(chosen, [*RECORD_STREAMS, "opportunity_fields", "opportunity_role_fields"])
    )
    assert run.error is None
    endpoints = sb.stats()["calls_by_endpoint"]
    assert endpoints["GET /rest/v1/opportunities/describe.json"] == 1
    assert endpoints["GET /rest/v1/opportunities/roles/describe.json"] == 1
    fields = {r["name"]: r for r in run.records("opportunity_fields")}
    assert set(fields) == {f.name for f in sb.store.opportunity_schema.fields}
    guid = fields["marketoGUID"]
    assert guid["isIdField"] is True
    assert guid["isSearchable"] is True
    assert guid["updateable"] is False
    ext = fields["externalOpportunityId"]
    assert ext["isDedupeField"] is True
    assert ext["displayName"] == "SFDC Oppty Id"
    assert ext["length"] == 50
    assert fields["region"]["isCustom"] is True
    assert fields["region"]["isSearchable"] is True
    roles = {r["name"]: r for r in run.records("opportunity_role_fields")}
    assert set(roles) == {f.name for f in sb.store.role_schema.fields}
    assert roles["role"]["isDedupeField"] is True
    assert roles["role"]["isSearchable"] is False
    assert roles["leadId"]["isSearchable"] is True
    assert roles["leadId"]["dataType"] == "integer"


def test_records_come_out_in_a_deterministic_order(own_sandbox: list[Sandbox]) -> None:
    sb = start(own_sandbox, bigger())
    config = tap_config(sb, lead_id_range={"start": 1, "end": 1500}, max_concurrent_requests=5)
    chosen = records_only(discover(config))
    runs = [run_tap(config, catalog=chosen) for _ in range(2)]
    orders = [
        [(m["stream"], m["record"]["marketoGUID"]) for m in r.messages if m["type"] == "RECORD"] for r in runs
    ]
    assert orders[0] == orders[1]
    assert len(orders[0]) > 1000


def test_roles_deselected_still_finds_opportunities_by_lead(sb: Sandbox, catalog: dict[str, Any]) -> None:
    leads = list(range(1, 41))
    run = run_tap(tap_config(sb, lead_ids=leads), catalog=select(catalog, [OPPS]))
    assert run.error is None
    assert run.guids(OPPS) == expected_for_leads(sb, leads)[OPPS]
    assert ROLES not in run.streams("SCHEMA")
    assert not run.records(ROLES)


def test_opportunities_deselected_reads_roles_only(sb: Sandbox, catalog: dict[str, Any]) -> None:
    ids = ["OPP-000001", "OPP-000002", "OPP-000003"]
    run = run_tap(tap_config(sb, external_opportunity_ids=ids), catalog=select(catalog, [ROLES]))
    assert run.error is None
    assert not run.records(OPPS)
    assert (
        run.guids(ROLES) == expected_for_opportunities(sb, lambda o: o["externalOpportunityId"] in ids)[ROLES]
    )
    assert run.tap.call_figures["follow_up_queries"] == 0


def test_stream_maps_apply_to_record_streams(sb: Sandbox, catalog: dict[str, Any]) -> None:
    config = tap_config(
        sb,
        lead_ids=list(range(1, 41)),
        stream_maps={
            ROLES: {"__filter__": "record['isPrimary'] == True", "lead": "leadId"},
            OPPS: {"__alias__": "deals"},
        },
        flattening_enabled=True,
        flattening_max_depth=1,
    )
    run = run_tap(config, catalog=records_only(catalog))
    assert run.error is None
    roles = run.records(ROLES)
    assert roles
    assert all(r["isPrimary"] is True and r["lead"] == r["leadId"] for r in roles)
    assert run.records("deals")
    assert not run.records(OPPS)


def test_state_is_written_per_batch_and_never_ahead(own_sandbox: list[Sandbox]) -> None:
    sb = start(own_sandbox, bigger())
    config = tap_config(sb, lead_id_range={"start": 1, "end": 1500})
    run = run_tap(config, catalog=records_only(discover(config)))
    assert run.error is None
    seen: dict[str, set[str]] = {OPPS: set(), ROLES: set()}
    done_before = 0
    for message in run.messages:
        if message["type"] == "RECORD":
            seen[message["stream"]].add(message["record"]["marketoGUID"])
        elif message["type"] == "STATE":
            point = message["value"]["bookmarks"].get("key_batches", {}).get("checkpoint")
            if point and point["source_index"] == 0:
                done = point["batches_done"]
                assert done >= done_before
                done_before = done
                want = expected_for_leads(sb, range(1, done * 300 + 1))
                assert seen[ROLES] >= want[ROLES]
                assert seen[OPPS] >= want[OPPS]
    assert done_before == 5


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


def test_internal_stream_is_never_emitted_even_if_a_catalog_selects_it(
    sb: Sandbox, catalog: dict[str, Any]
) -> None:
    from tap_marketo_opps.schemas import KEY_BATCHES_SCHEMA

    crafted = records_only(catalog)
    crafted["streams"].append(
        {
            "tap_stream_id": "key_batches",
            "stream": "key_batches",
            "schema": KEY_BATCHES_SCHEMA,
            "key_properties": ["source", "batch"],
            "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
        }
    )
    run = run_tap(tap_config(sb, lead_ids=[1, 2, 3]), catalog=crafted)
    assert emitted(run) == expected_for_leads(sb, [1, 2, 3])
    assert "key_batches" not in run.streams("SCHEMA") + run.streams("RECORD")


@pytest.mark.parametrize(
    "keys",
    [{"lead_ids": [1, 2, 3, 4, 5]}, {"lead_id_range": {"start": 1, "end": 1500}}],
    ids=["one-batch", "several-batches"],
)
def test_connection_test_emits_at_most_one_record_per_stream(sb: Sandbox, keys: dict[str, Any]) -> None:
    import contextlib
    import io

    from tap_marketo_opps.tap import TapMarketoOpps

    tap = TapMarketoOpps(config=tap_config(sb, **keys), parse_env_config=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tap.run_connection_test()
    records = Counter(
        json.loads(line)["stream"] for line in out.getvalue().splitlines() if '"RECORD"' in line
    )
    assert set(records) == {OPPS, ROLES, "opportunity_fields", "opportunity_role_fields"}
    assert max(records.values()) == 1
    assert "checkpoint" not in out.getvalue()


def test_batch_messages_carry_the_same_records(sb: Sandbox, catalog: dict[str, Any], tmp_path: Path) -> None:
    import gzip

    config = tap_config(
        sb,
        lead_ids=list(range(1, 41)),
        batch_config={
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": f"file://{tmp_path}"},
        },
    )
    run = run_tap(config, catalog=records_only(catalog))
    assert run.error is None
    found: dict[str, set[str]] = {OPPS: set(), ROLES: set()}
    for message in run.messages:
        assert message["type"] != "RECORD"
        if message["type"] == "BATCH":
            for url in message["manifest"]:
                with gzip.open(url.removeprefix("file://"), "rt") as handle:
                    found[message["stream"]] |= {json.loads(line)["marketoGUID"] for line in handle}
    assert found == expected_for_leads(sb, range(1, 41))


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


def test_unreadable_values_are_emitted_as_null_and_reported(
    own_sandbox: list[Sandbox], caplog: pytest.LogCaptureFixture
) -> None:
    # The describe says integer, the stored values are text ("Prospecting|New Business").
    fields = [
        CustomField("legacyFormula", "integer", updateable=False) if f.name == "legacyFormula" else f
        for f in DEFAULT_CUSTOM_FIELDS
    ]
    sb = start(own_sandbox, small(custom_fields=fields))
    opps = sb.store.opportunities()
    bad = {o["marketoGUID"] for o in opps if o.get("legacyFormula") is not None}
    assert len(bad) > LOGGED_UNREADABLE_PER_FIELD
    catalog = records_only(discover(tap_config(sb)))
    caplog.set_level(logging.WARNING)
    run = run_tap(
        tap_config(sb, external_opportunity_ids=[o["externalOpportunityId"] for o in opps]), catalog=catalog
    )
    records = run.records(OPPS)
    assert {r["marketoGUID"] for r in records} == {o["marketoGUID"] for o in opps}  # no record lost
    assert all(r["legacyFormula"] is None for r in records)
    assert all(r["name"] for r in records)  # the other fields are intact
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    logged = [m for m in messages if m.startswith("opportunities record marketoGUID ")]
    assert len(logged) == LOGGED_UNREADABLE_PER_FIELD
    for message in logged:
        guid = message.split()[3].rstrip(":")
        assert guid in bad
        assert "field 'legacyFormula' (integer): cannot read" in message
        assert "emitted as null" in message
    assert "further ones are only counted" in logged[-1]
    summaries = [m for m in messages if "emitted as null (the records themselves were emitted)" in m]
    assert len(summaries) == 1
    assert f"by stream.field: opportunities.legacyFormula {len(bad)}." in summaries[0]


# ---- under each plausible answer to what Marketo's docs leave open ---------------------------

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
