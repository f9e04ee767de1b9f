"""tap-marketo-opps against the sandbox: types and values, what a catalog selects, and the calls it makes.

Every test compares what the tap emitted with the sandbox's own store (`sb.store`), so a
missing, extra or mistyped record fails the test. Sandboxes use a 1 s rate window (and the
tap the same) so the real 100-calls-per-window limit stays on without slowing the tests.
The fixtures `sb`, `catalog` and `own_sandbox` are in tests/tap/conftest.py.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketo_sandbox import DEFAULT_CUSTOM_FIELDS, CustomField, Fault, Sandbox
from tap_marketo_opps.schemas import LOGGED_UNREADABLE_PER_FIELD
from tap_marketo_opps.testing import TapRun, discover, run_tap, select
from tests.support.tap import (
    OPPS,
    RECORD_STREAMS,
    ROLES,
    bigger,
    emitted,
    expected_for_leads,
    expected_for_opportunities,
    records_only,
    small,
    start,
    tap_config,
)

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


# ---- what a catalog, stream maps and batch_config select -----------------------------------------


def test_deselected_properties_are_not_emitted(sb: Sandbox, catalog: dict[str, Any]) -> None:
    chosen = select(catalog, RECORD_STREAMS, deselect_properties={OPPS: ["description", "amount"]})
    run = run_tap(tap_config(sb, external_opportunity_ids=["OPP-000001", "OPP-000002"]), catalog=chosen)
    records = run.records(OPPS)
    assert len(records) == 2
    for record in records:
        assert "description" not in record
        assert "amount" not in record
        assert "name" in record


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
