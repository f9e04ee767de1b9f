"""tap-marketo-opps against the sandbox: start_date, bookmarks, stop and resume, STATE never ahead.

Every test compares what the tap emitted with the sandbox's own store (`sb.store`), so a
missing, extra or mistyped record fails the test. Sandboxes use a 1 s rate window (and the
tap the same) so the real 100-calls-per-window limit stays on without slowing the tests.
The fixtures `sb`, `catalog` and `own_sandbox` are in tests/tap/conftest.py.
"""

from __future__ import annotations

import math
import time
from typing import Any

from marketo_api import MarketoClient, MarketoObject, MarketoSettings
from marketo_sandbox import Sandbox
from tap_marketo_opps.streams import SyncStoppedError
from tap_marketo_opps.testing import discover, run_tap
from tests.support.tap import (
    OPPS,
    ROLES,
    WINDOW,
    bigger,
    checkpoint,
    emitted,
    expected_for_leads,
    records_only,
    small,
    start,
    tap_config,
    union,
)

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
