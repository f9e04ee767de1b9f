"""The ``/_sandbox`` admin API: what tests and tools outside the process use to steer a sandbox.

No auth, no limits, no faults, and not counted in the stats it reports. A bad request is HTTP 400
with ``{"error": ...}``; an unknown one 404.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .state import validate_changes

if TYPE_CHECKING:
    from .state import SandboxState

Query = dict[str, list[str]]
Action = Callable[["SandboxState", Query, dict[str, Any]], Any]
OK = {"ok": True}


def _store(state: SandboxState, query: Query, data: dict[str, Any]) -> dict[str, Any]:
    obj = query.get("object", ["opportunities"])[0]
    store = state.store
    records: list[Any]
    if obj == "opportunities":
        records = store.opportunities()
    elif obj in ("opportunity_roles", "roles"):
        records = store.roles()
    elif obj == "leads":
        records = store.lead_ids()
    else:
        raise ValueError("object must be opportunities, opportunity_roles or leads")
    return {"object": obj, "count": len(records), "result": records}


def _configure(state: SandboxState, query: Query, data: dict[str, Any]) -> dict[str, Any]:
    return state.configure(**validate_changes(data)).public_dict()


def _leads(state: SandboxState, query: Query, data: dict[str, Any]) -> dict[str, Any]:
    ids = data.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise ValueError("'ids' must be a list of integers")
    state.store.add_leads(ids)
    return {"ok": True, "leads": len(state.store.lead_ids())}


def _done(step: Callable[[SandboxState, dict[str, Any]], object]) -> Action:
    """An action whose answer is just ``{"ok": true}``."""

    def action(state: SandboxState, query: Query, data: dict[str, Any]) -> dict[str, Any]:
        step(state, data)
        return OK

    return action


#: (method, name under /_sandbox/) -> action
ACTIONS: dict[tuple[str, str], Action] = {
    ("GET", "stats"): lambda state, query, data: state.stats(),
    ("GET", "call-times"): lambda state, query, data: state.call_times(),
    ("GET", "config"): lambda state, query, data: state.config.public_dict(),
    ("GET", "store"): _store,
    ("POST", "config"): _configure,
    ("POST", "reset-stats"): _done(lambda state, data: state.reset_stats()),
    ("POST", "revoke-tokens"): _done(lambda state, data: state.revoke_tokens()),
    ("POST", "expire-tokens"): _done(lambda state, data: state.expire_tokens()),
    ("POST", "leads"): _leads,
    ("POST", "clear"): _done(lambda state, data: state.store.clear(leads=bool(data.get("leads", False)))),
}


def handle(state: SandboxState, method: str, path: str, query: Query, body: bytes) -> tuple[int, Any]:
    """The HTTP status and JSON answer of one admin request."""
    name = path[len("/_sandbox/") :]
    try:
        data: dict[str, Any] = {}
        if method == "POST" and body:
            try:
                parsed = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise ValueError("request body must be JSON") from exc
            if not isinstance(parsed, dict):
                raise ValueError("request body must be a JSON object")
            data = parsed
        action = ACTIONS.get((method, name))
        if action is None:
            return 404, {"error": f"unknown sandbox endpoint {method} {path}"}
        return 200, action(state, query, data)
    except (ValueError, TypeError) as exc:
        return 400, {"error": str(exc)}
