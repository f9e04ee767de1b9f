"""Writes sample.singer: opportunities and roles the way a singer-sdk tap emits them.

Run: .venv/bin/python tests/data/target/make_sample.py

Each opportunity's roles come *before* it (singer-sdk syncs child streams before writing the
parent record). Lead ids 1-60 exist in every sandbox data set. The file also holds records the
target rejects or Marketo skips, a field Marketo does not know, and two deletes:

* DEMO-0021: name null                      -> rejected (name_required)
* DEMO-0022: name of 300 characters         -> rejected (too_long)
* DEMO-0023: amount "a lot"                 -> rejected (invalid_record, field 'amount')
* role of DEMO-0003 with leadId null        -> rejected (missing_key)
* role of DEMO-0004 for lead 999999         -> skipped by Marketo (1004 lead not found)
* role of DEMO-MISSING                      -> skipped by Marketo (1004), after waiting to the end
* crm_owner_email                           -> dropped with one warning (not in describe)
* DEMO-0019 and one role of DEMO-0001        -> deleted (_sdc_deleted_at)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("sample.singer")
STAGES = ["Prospecting", "Qualification", "Proposal/Price Quote", "Negotiation/Review", "Closed Won"]
ROLES = ["Decision Maker", "Technical Buyer", "Champion"]

OPP_SCHEMA = {
    "type": "object",
    "properties": {
        "externalOpportunityId": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "description": {"type": ["string", "null"]},
        "stage": {"type": ["string", "null"]},
        "amount": {"type": ["number", "null"]},
        "probability": {"type": ["integer", "null"]},
        "closeDate": {"type": ["string", "null"], "format": "date"},
        "isWon": {"type": ["boolean", "null"]},
        "externalCreatedDate": {"type": ["string", "null"], "format": "date-time"},
        "crm_owner_email": {"type": ["string", "null"]},
        "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
ROLE_SCHEMA = {
    "type": "object",
    "properties": {
        "externalOpportunityId": {"type": "string"},
        "leadId": {"type": ["integer", "null"]},
        "role": {"type": "string"},
        "isPrimary": {"type": ["boolean", "null"]},
        "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
    },
}


def _message(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


def _opportunity(n: int) -> dict[str, Any]:
    stage = STAGES[n % len(STAGES)]
    return {
        "externalOpportunityId": f"DEMO-{n:04d}",
        "name": f"Demo deal {n}",
        "description": f"Sample opportunity {n} written by target-marketo-opps",
        "stage": stage,
        "amount": float(f"{1000 + n * 137}.{n % 100:02d}"),  # a JSON number, read back as a Decimal
        "probability": 100 if stage == "Closed Won" else 10 + n * 3,
        "closeDate": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}",
        "isWon": stage == "Closed Won",
        "externalCreatedDate": f"2025-{1 + n % 12:02d}-15T09:30:00+02:00",
        "crm_owner_email": f"owner{n}@example.com",
    }


def messages() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    roles_schema = _message(
        "SCHEMA",
        stream="opportunity_roles",
        schema=ROLE_SCHEMA,
        key_properties=["externalOpportunityId", "leadId", "role"],
    )
    opps_schema = _message(
        "SCHEMA", stream="opportunities", schema=OPP_SCHEMA, key_properties=["externalOpportunityId"]
    )
    for n in range(1, 21):
        out.append(roles_schema)
        for i, role in enumerate(ROLES[: 2 + n % 2]):
            out.append(
                _message(
                    "RECORD",
                    stream="opportunity_roles",
                    record={
                        "externalOpportunityId": f"DEMO-{n:04d}",
                        "leadId": 1 + (n * 7 + i * 11) % 60,
                        "role": role,
                        "isPrimary": i == 0,
                    },
                )
            )
        if n == 3:
            out.append(_role_record("DEMO-0003", None, "Influencer"))
        if n == 4:
            out.append(_role_record("DEMO-0004", 999999, "Influencer"))
        out.append(opps_schema)
        out.append(_message("RECORD", stream="opportunities", record=_opportunity(n)))
        if n % 5 == 0:
            out.append(
                _message("STATE", value={"bookmarks": {"opportunities": {"last_id": f"DEMO-{n:04d}"}}})
            )
    out.append(_role_record("DEMO-MISSING", 5, "Champion"))
    bad_name = {**_opportunity(21), "name": None}
    too_long = {**_opportunity(22), "name": "X" * 300}
    bad_amount = {**_opportunity(23), "amount": "a lot"}
    for rec in (bad_name, too_long, bad_amount):
        out.append(_message("RECORD", stream="opportunities", record=rec))
    deleted_at = "2026-11-20T12:00:00Z"
    out.append(
        _message(
            "RECORD",
            stream="opportunities",
            record={"externalOpportunityId": "DEMO-0019", "_sdc_deleted_at": deleted_at},
        )
    )
    first_role = out[1]["record"]
    out.append(
        _message(
            "RECORD",
            stream="opportunity_roles",
            record={
                **{k: first_role[k] for k in ("externalOpportunityId", "leadId", "role")},
                "_sdc_deleted_at": deleted_at,
            },
        )
    )
    out.append(_message("STATE", value={"bookmarks": {"opportunities": {"last_id": "DEMO-0023"}}}))
    return out


def _role_record(eid: str, lead: int | None, role: str) -> dict[str, Any]:
    return _message(
        "RECORD",
        stream="opportunity_roles",
        record={"externalOpportunityId": eid, "leadId": lead, "role": role, "isPrimary": False},
    )


def main() -> None:
    lines = [json.dumps(m, default=str) for m in messages()]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} messages to {OUT}")


if __name__ == "__main__":
    main()
