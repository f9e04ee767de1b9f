"""The target under each unverified Marketo behaviour the sandbox offers: its dry run predicts what
its real run does, and a real run ends with what the input says, whatever Marketo matches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marketo_sandbox import Sandbox
from tests.support.target import opp, opp_schema, role, role_schema, run_target, target_config

SandboxFactory = Callable[..., Sandbox]

# The sandbox's switches for what Marketo's docs leave open, one alternative each.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "trimmed filter values": {"filter_values_trimmed": True},
    "fields adds keys": {"query_fields_added": "keys"},
    "fields adds defaults": {"query_fields_added": "defaults", "spec_complete": True},
    "access_token parameter accepted": {"legacy_param_auth": "accepted"},
    "missing opportunity 1013": {"missing_opportunity_code": "1013"},
}

DRY_TO_REAL = {
    "would_create": "created",
    "would_update": "updated",
    "would_delete": "deleted",
    "would_skip": "skipped",
    "rejected": "rejected",
}


def _input(lead: int) -> list[dict[str, Any]]:
    return [
        opp_schema(),
        opp("VAR-1", amount=10),  # exists already
        opp("var-1", amount=11),  # the same key in another case
        opp("VAR-2", amount=20),  # new
        opp("VAR-3 ", amount=30),  # trailing space: not VAR-3
        role_schema(),
        role("VAR-2", lead, "Buyer"),
        role("VAR-9", lead, "Buyer"),  # before its opportunity
        opp_schema(),
        opp("VAR-9", amount=90),
    ]


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_the_dry_run_predicts_the_real_run_under_each_marketo_behaviour(
    make_sandbox: SandboxFactory, tmp_path: Path, variant: str
) -> None:
    sb = make_sandbox(opportunities=5, leads=20, heavy_leads=0, rate_limit=None, **VARIANTS[variant])
    lead = sb.store.lead_ids()[0]
    setup = run_target(target_config(sb, tmp_path), [opp_schema(), opp("VAR-1"), opp("VAR-3")])
    assert setup.statuses() == {"created": 2}

    dry = run_target(target_config(sb, tmp_path, dry_run=True), _input(lead))
    real = run_target(target_config(sb, tmp_path), _input(lead))

    predicted = {row["record"]: DRY_TO_REAL[row["status"]] for row in dry.results}
    happened = {row["record"]: row["status"] for row in real.results}
    assert predicted == happened
    assert real.status_of(6) == "created"  # the role that came before its opportunity
    stored = sb.store.opportunity("VAR-9")
    assert stored is not None


def test_keys_differing_only_in_case_keep_their_order_when_marketo_ignores_case(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # Such a Marketo would answer 1036 "duplicate" for two of them in one call; the target never
    # batches them together, so the later one simply updates the record in input order.
    sb = make_sandbox(opportunities=5, leads=20, heavy_leads=0, rate_limit=None, filter_case_sensitive=False)
    run = run_target(
        target_config(sb, tmp_path),
        [opp_schema(), opp("CASE-1", amount=1), opp("case-1", amount=2), opp("Case-1", amount=3)],
    )
    assert [run.status_of(n) for n in (1, 2, 3)] == ["created", "updated", "updated"]
    stored = sb.store.opportunity("CASE-1")
    assert stored is not None
    assert str(stored["amount"]) in ("3", "3.0", "3.00")
