"""Helpers shared by the tap's sync tests (no tests in here): sandbox and tap settings, expected sets.

Sandboxes use a 1 s rate window (and the tap the same) so the real 100-calls-per-window limit
stays on without slowing the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from marketo_sandbox import Sandbox, SandboxConfig
from tap_marketo_opps.testing import TapRun, select
from tests.support import paths

DATA = paths.DATA / "tap"
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
