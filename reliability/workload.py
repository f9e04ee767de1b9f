"""The input the fault and crash trials feed the target, the end state it must leave, and the checks.

A record is *lost* when it has no outcome line, when its outcome says written but Marketo (the
sandbox store) does not hold what the input asked for, or when a STATE was emitted past it
before its outcome was on disk. Rejected and skipped records carry a reason: not lost, but
counted, since the fault trials' input is valid throughout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marketo_sandbox import Sandbox

from .common import WRITTEN, same_number

OPP_PROPERTIES: dict[str, Any] = {
    "externalOpportunityId": {"type": ["string", "null"]},
    "name": {"type": ["string", "null"]},
    "stage": {"type": ["string", "null"]},
    "amount": {"type": ["number", "null"]},
    "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
}
ROLE_PROPERTIES: dict[str, Any] = {
    "externalOpportunityId": {"type": ["string", "null"]},
    "leadId": {"type": ["integer", "null"]},
    "role": {"type": ["string", "null"]},
    "isPrimary": {"type": ["boolean", "null"]},
    "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
}
DELETED_AT = "2026-11-01T00:00:00Z"


def schema_message(stream: str) -> dict[str, Any]:
    if stream == "opportunities":
        return {
            "type": "SCHEMA",
            "stream": stream,
            "schema": {"type": "object", "properties": OPP_PROPERTIES},
            "key_properties": ["externalOpportunityId"],
        }
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": ROLE_PROPERTIES},
        "key_properties": ["externalOpportunityId", "leadId", "role"],
    }


def _rec(stream: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": record}


def target_input(count: int, leads: int, seeded: list[str], prefix: str = "R") -> list[dict[str, Any]]:
    """`count` new opportunities, two roles each (roles first), later updates and deletes, STATEs.

    Updates of earlier keys catch writes applied out of order; deletes of seeded opportunities
    and of roles this input created catch deletes that are lost or undone.
    """
    out = [schema_message("opportunity_roles"), schema_message("opportunities")]
    for n in range(1, count + 1):
        eid = f"{prefix}-{n:04d}"
        for i in range(2):
            lead = 1 + (n * 7 + i * 13) % leads
            out.append(
                _rec(
                    "opportunity_roles",
                    {"externalOpportunityId": eid, "leadId": lead, "role": f"Role {i}", "isPrimary": i == 0},
                )
            )
        out.append(
            _rec(
                "opportunities",
                {"externalOpportunityId": eid, "name": f"Opp {eid}", "stage": "New", "amount": n + 0.25},
            )
        )
        if n % 10 == 5 and n > 3:
            earlier = f"{prefix}-{n - 3:04d}"
            out.append(
                _rec(
                    "opportunities",
                    {"externalOpportunityId": earlier, "stage": "Closed Won", "amount": n * 10 + 0.5},
                )
            )
        if n % 15 == 0:
            gone = f"{prefix}-{n - 2:04d}"
            lead = 1 + ((n - 2) * 7) % leads
            out.append(
                _rec(
                    "opportunity_roles",
                    {
                        "externalOpportunityId": gone,
                        "leadId": lead,
                        "role": "Role 0",
                        "_sdc_deleted_at": DELETED_AT,
                    },
                )
            )
        if n == count // 2:
            out += [
                _rec("opportunities", {"externalOpportunityId": eid, "_sdc_deleted_at": DELETED_AT})
                for eid in seeded[:2]
            ]
        if n % 10 == 0:
            out.append({"type": "STATE", "value": {"bookmarks": {"n": n}}})
    out.append({"type": "STATE", "value": {"bookmarks": {"n": "end"}}})
    return out


def write_singer(path: Path, messages: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages), encoding="utf-8")
    return path


def records_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("type") == "RECORD"]


OppKey = str
RoleKey = tuple[str, int, str]


Expected = tuple[dict[OppKey, dict[str, Any] | None], dict[RoleKey, dict[str, Any] | None]]


def expected_end(sandbox_roles: list[dict[str, Any]], messages: list[dict[str, Any]]) -> Expected:
    """What Marketo must hold afterwards for every key the input touches (None: absent)."""
    opps: dict[OppKey, dict[str, Any] | None] = {}
    roles: dict[RoleKey, dict[str, Any] | None] = {}
    existing_roles = {
        (r["externalOpportunityId"], r["leadId"], r["role"]): {"isPrimary": r.get("isPrimary")}
        for r in sandbox_roles
    }
    for message in records_of(messages):
        rec = dict(message["record"])
        deleted = rec.pop("_sdc_deleted_at", None) is not None
        if message["stream"] == "opportunities":
            eid = rec["externalOpportunityId"]
            if deleted:
                opps[eid] = None
                for key in [k for k in {**existing_roles, **roles} if k[0] == eid]:
                    roles[key] = None
                    existing_roles.pop(key, None)
            else:
                opps[eid] = {**(opps.get(eid) or {}), **rec}
        else:
            key = (rec["externalOpportunityId"], rec["leadId"], rec["role"])
            roles[key] = None if deleted else {**(roles.get(key) or {}), **rec}
    return opps, roles


def unconfirmed(
    sandbox_roles: list[dict[str, Any]], messages: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> set[Any]:
    """Keys whose last touching record has no outcome line or one that does not claim a write
    (rejected, skipped, uncertain): counted under those outcomes, so the store is not judged."""
    last: dict[Any, int] = {}
    role_keys = {(r["externalOpportunityId"], r["leadId"], r["role"]) for r in sandbox_roles}
    for number, message in enumerate(records_of(messages), start=1):
        rec = message["record"]
        if message["stream"] == "opportunities":
            eid = rec["externalOpportunityId"]
            last[eid] = number
            if rec.get("_sdc_deleted_at") is not None:
                for key in [k for k in role_keys if k[0] == eid]:
                    last[key] = number
        else:
            key = (rec["externalOpportunityId"], rec["leadId"], rec["role"])
            role_keys.add(key)
            last[key] = number
    status = {int(r["record"]): r.get("status") for r in rows}
    return {key for key, number in last.items() if status.get(number) not in WRITTEN}


@dataclass
class Verdict:
    """One target run (or a crashed run and its rerun) checked against the expected end state."""

    records: int = 0
    written: int = 0
    rejected: int = 0
    lost: int = 0
    duplicates: int = 0
    state_ahead: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < 5:
            self.notes.append(text)


def check_store(sandbox: Sandbox, expected: Expected, verdict: Verdict, skip: set[Any] | None = None) -> None:
    """Every key (but those in `skip`) must be in the store as the input asked."""
    opps, roles = expected
    skip = skip or set()
    for eid, want in opps.items():
        if eid in skip:
            continue
        have = sandbox.store.opportunity(eid)
        if want is None:
            if have is not None:
                verdict.lost += 1
                verdict.note(f"opportunity {eid} should be deleted but is in Marketo")
            continue
        if have is None:
            verdict.lost += 1
            verdict.note(f"opportunity {eid} missing from Marketo")
            continue
        for name, value in want.items():
            ok = same_number(have.get(name), value) if name == "amount" else have.get(name) == value
            if not ok:
                verdict.lost += 1
                verdict.note(f"opportunity {eid}: {name} is {have.get(name)!r}, input's last value {value!r}")
                break
    for (eid, lead, role), want_role in roles.items():
        if (eid, lead, role) in skip:
            continue
        present = sandbox.store.role(eid, lead, role)
        if (want_role is None) != (present is None):
            verdict.lost += 1
            verdict.note(f"role {eid}/{lead}/{role}: {'present' if present else 'absent'} in Marketo")
        elif (
            present is not None
            and want_role is not None
            and present.get("isPrimary") != want_role["isPrimary"]
        ):
            verdict.lost += 1
            verdict.note(f"role {eid}/{lead}/{role}: isPrimary {present.get('isPrimary')!r}")


def check_outcomes(rows: list[dict[str, Any]], record_count: int, verdict: Verdict) -> None:
    """One outcome line per input record of the run that finished."""
    seen: dict[int, dict[str, Any]] = {}
    row: dict[str, Any] | None
    for row in rows:
        number = int(row["record"])
        if number in seen:
            verdict.duplicates += 1
            verdict.note(f"record {number} has two outcome lines")
        seen[number] = row
    verdict.records = record_count
    missing = [n for n in range(1, record_count + 1) if n not in seen]
    if missing:
        verdict.lost += len(missing)
        shown = ", ".join(str(n) for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
        verdict.note(f"{len(missing)} records without an outcome line ({shown})")
    for number in range(1, record_count + 1):
        row = seen.get(number)
        if row is None:
            continue
        if row["status"] in WRITTEN:
            verdict.written += 1
        else:
            verdict.rejected += 1
            codes = ",".join(str(r.get("code")) for r in row.get("reasons") or [])
            verdict.note(f"record {number} {row['status']} ({codes})")


def states_ahead(
    stdout: list[dict[str, Any]], messages: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> int:
    """STATE lines emitted before every record preceding them had an outcome line on disk."""
    before: dict[str, int] = {}
    seen = 0
    for m in messages:
        if m.get("type") == "RECORD":
            seen += 1
        elif m.get("type") == "STATE":
            before[json.dumps(m["value"], sort_keys=True)] = seen
    done = {int(r["record"]) for r in rows}
    ahead = 0
    for line in stdout:
        position = before.get(json.dumps(line, sort_keys=True))
        if position is None:
            ahead += 1  # a STATE the input never carried
        elif not set(range(1, position + 1)) <= done:
            ahead += 1
    return ahead


def rows_by_run(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row.get("run")), []).append(row)
    return out


def tap_expected(sandbox: Sandbox, first: int, last: int) -> dict[str, set[str]]:
    """marketoGUIDs a tap run over leads first..last must emit."""
    roles = [r for r in sandbox.store.roles() if first <= r["leadId"] <= last]
    ids = {r["externalOpportunityId"] for r in roles}
    return {
        "opportunities": {
            o["marketoGUID"] for o in sandbox.store.opportunities() if o["externalOpportunityId"] in ids
        },
        "opportunity_roles": {r["marketoGUID"] for r in roles},
    }


def tap_emitted(lines: list[dict[str, Any]]) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """marketoGUIDs per stream (in order, repeats kept) and the STATE values of one tap run."""
    out: dict[str, list[str]] = {"opportunities": [], "opportunity_roles": []}
    states = []
    for m in lines:
        if m.get("type") == "RECORD" and m.get("stream") in out:
            out[m["stream"]].append(str(m["record"].get("marketoGUID")))
        elif m.get("type") == "STATE":
            states.append(m["value"])
    return out, states
