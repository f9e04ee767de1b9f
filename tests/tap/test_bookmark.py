"""The updatedAt bookmark: incremental runs go quiet, yet no change within the bookmark's second is lost.

Marketo's updatedAt has whole seconds, so the bookmark stays inclusive and the run that saves it
also saves the records it emitted at that second (marketoGUID and a digest of their values). Every
test runs the tap against a real sandbox and changes records through Marketo's API or the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from marketo_api import MarketoClient, MarketoObject, MarketoSettings
from marketo_sandbox import Sandbox, SandboxConfig
from tap_marketo_opps.streams import AT_BOOKMARK, SyncStoppedError
from tap_marketo_opps.testing import TapRun, discover, run_tap, select

WINDOW = 1.0
OPPS = "opportunities"
ROLES = "opportunity_roles"
STREAMS = (OPPS, ROLES)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig.small(rate_window_seconds=WINDOW)) as sandbox:
        yield sandbox


def config(sb: Sandbox, **settings: Any) -> dict[str, Any]:
    return {
        **sb.connection_settings(),
        "rate_window_seconds": WINDOW,
        "max_retry_seconds": 60,
        "lead_id_range": {"start": 1, "end": 100},
        **settings,
    }


def ok(run: TapRun) -> TapRun:
    assert run.error is None, run.error
    return run


def bookmark(run: TapRun, stream: str) -> str:
    return str(run.last_state["bookmarks"][stream]["replication_key_value"])


def write_back(sb: Sandbox, records: list[dict[str, Any]]) -> None:
    """Write opportunities back unchanged (as a round trip does): Marketo sets their updatedAt."""
    fields = ("externalOpportunityId", "name", "stage", "amount")
    settings = MarketoSettings.from_config({**sb.connection_settings(), "rate_window_seconds": WINDOW})
    with MarketoClient(settings) as client:
        same = [{k: r[k] for k in fields if k in r} for r in records]
        results = client.sync(MarketoObject.OPPORTUNITY, same, action="updateOnly")
    assert all(r.status == "updated" for r in results), results


def set_opportunity(sb: Sandbox, guid: str, **changes: Any) -> None:
    """Change a stored opportunity directly, with the updatedAt the test chooses."""
    opportunities, roles = sb.store.opportunities(), sb.store.roles()
    (target,) = [o for o in opportunities if o["marketoGUID"] == guid]
    target.update(changes)
    sb.store.clear()
    sb.store.load([], opportunities, roles)


@pytest.fixture
def chosen(sb: Sandbox) -> dict[str, Any]:
    return select(discover(config(sb)), STREAMS)


def test_a_second_run_without_changes_emits_nothing(
    sb: Sandbox, chosen: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    first = ok(run_tap(config(sb), catalog=chosen))
    for stream in STREAMS:
        at = bookmark(first, stream)
        newest = {r["marketoGUID"] for r in first.records(stream) if r["updatedAt"] == at}
        assert newest, "the bookmark is the newest updatedAt emitted"
        saved = first.last_state["bookmarks"][stream][AT_BOOKMARK]
        assert saved["updatedAt"] == at
        assert set(saved["records"]) == newest  # exactly the bookmark second's records

    caplog.set_level(logging.INFO)
    second = ok(run_tap(config(sb), catalog=chosen, state=first.last_state))
    third = ok(run_tap(config(sb), catalog=chosen, state=second.last_state))
    for run in (second, third):
        assert run.records(OPPS) == []
        assert run.records(ROLES) == []
    assert third.last_state["bookmarks"][OPPS] == first.last_state["bookmarks"][OPPS]
    assert "unchanged since the run that saved the bookmark" in caplog.text
    assert "--full-refresh" not in caplog.text


def test_a_change_within_the_bookmark_second_is_emitted(sb: Sandbox, chosen: dict[str, Any]) -> None:
    """What a strict `>` bookmark would lose: updates in the bookmark's own second, after the read."""
    first = ok(run_tap(config(sb), catalog=chosen))
    at = bookmark(first, OPPS)
    at_second = [r for r in first.records(OPPS) if r["updatedAt"] == at]
    older = next(r for r in first.records(OPPS) if r["updatedAt"] < at)
    marketo_at = at.replace("+00:00", "Z")
    set_opportunity(sb, at_second[0]["marketoGUID"], stage="Changed in the same second")
    set_opportunity(sb, older["marketoGUID"], stage="Changed later", updatedAt=marketo_at)

    second = ok(run_tap(config(sb), catalog=chosen, state=first.last_state))
    assert {r["marketoGUID"]: r["stage"] for r in second.records(OPPS)} == {
        at_second[0]["marketoGUID"]: "Changed in the same second",
        older["marketoGUID"]: "Changed later",
    }
    # The other records of that second are still the ones already emitted.
    assert second.records(ROLES) == []


def test_a_write_back_is_read_once_then_the_round_trip_goes_quiet(
    sb: Sandbox, chosen: dict[str, Any]
) -> None:
    first = ok(run_tap(config(sb), catalog=chosen))
    written = first.records(OPPS)[:3]
    write_back(sb, written)  # unchanged values, new updatedAt: Marketo cannot tell

    second = ok(run_tap(config(sb), catalog=chosen, state=first.last_state))
    assert {r["marketoGUID"] for r in second.records(OPPS)} == {r["marketoGUID"] for r in written}
    assert bookmark(second, OPPS) > bookmark(first, OPPS)
    third = ok(run_tap(config(sb), catalog=chosen, state=second.last_state))
    assert third.records(OPPS) == []
    assert third.records(ROLES) == []


def test_a_stopped_run_keeps_the_saved_second_for_its_resumption(sb: Sandbox, chosen: dict[str, Any]) -> None:
    wide = config(sb, lead_id_range={"start": 1, "end": 1200}, max_concurrent_requests=1)
    first = ok(run_tap(wide, catalog=chosen))
    stopped = run_tap({**wide, "daily_call_budget": 3}, catalog=chosen, state=first.last_state)
    assert isinstance(stopped.error, SyncStoppedError)
    saved = first.last_state["bookmarks"][OPPS][AT_BOOKMARK]
    assert stopped.last_state["bookmarks"][OPPS][AT_BOOKMARK] == saved
    resumed = ok(run_tap(wide, catalog=chosen, state=stopped.last_state))
    assert stopped.records(OPPS) + resumed.records(OPPS) == []
    assert stopped.records(ROLES) + resumed.records(ROLES) == []


def test_a_bookmark_newer_than_every_record_warns_to_full_refresh(
    sb: Sandbox, chosen: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    seeded = ok(run_tap(config(sb), catalog=chosen))
    write_back(sb, seeded.records(OPPS)[:1])
    later = ok(run_tap(config(sb), catalog=chosen, state=seeded.last_state))
    assert len(later.records(OPPS)) == 1

    # The instance is reset to its seed data: every record is older than the saved bookmark.
    with Sandbox(SandboxConfig.small(rate_window_seconds=WINDOW)) as reset:
        caplog.set_level(logging.WARNING)
        quiet = ok(run_tap(config(reset), catalog=chosen, state=later.last_state))
    assert quiet.records(OPPS) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (warning,) = [w for w in warnings if w.startswith(f"{OPPS}: the saved bookmark")]
    assert "--full-refresh" in warning
    assert bookmark(later, OPPS) in warning
