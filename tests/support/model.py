"""A sequential model of the target README's promises, and random mixed input to check against it.

`generate` makes opportunity and role upserts/deletes over a few keys (roles before their
opportunity, roles for a deleted opportunity, unknown leads, interleaved STATE); `model` says what
each record's outcome and the final store must be.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tests.support.target import deleted, opp, opp_schema, role, role_schema, state

Message = dict[str, Any]
RoleKey = tuple[str, int, str]

OPPS = ("F-1", "F-2", "F-3", "F-4")
LEADS = (3, 4, 5, 999)  # 999 is not a lead in the sandbox
ROLES = ("Champion", "Buyer")
RECORDS_PER_SEED = 25


@dataclass
class Expected:
    outcomes: dict[int, str]  # 1-based record number -> status
    opps: dict[str, tuple[Any, Any]]  # externalOpportunityId -> (name, stage)
    roles: dict[RoleKey, Any]  # role key -> isPrimary


def generate(rng: random.Random, n: int = RECORDS_PER_SEED) -> tuple[list[Message], list[Message]]:
    """Few keys so records collide: same-key ordering, deferral and delete interplay get exercised.

    Returns the full message stream and the RECORD messages alone (record i is `records[i - 1]`).
    A STATE's value is the index of the last record before it, so its emission can be checked.
    """
    messages, records = [opp_schema(), role_schema()], []
    for i in range(n):
        eid = rng.choice(OPPS)
        kind = rng.random()
        if kind < 0.35:
            message = opp(eid, name=f"n{i}", stage=f"s{i}")
        elif kind < 0.45:
            message = deleted(opp(eid, name=f"n{i}"))
        elif kind < 0.85:
            message = role(eid, rng.choice(LEADS), rng.choice(ROLES), isPrimary=rng.random() < 0.5)
        else:
            message = deleted(role(eid, rng.choice(LEADS), rng.choice(ROLES)))
        messages.append(message)
        records.append(message)
        if rng.random() < 0.3:
            messages.append(state({"i": i}))
    return messages, records


def model(
    records: list[Message],
    opps: dict[str, tuple[Any, Any]],
    roles: dict[RoleKey, Any],
    leads: set[int] | None,
) -> Expected:
    """Apply records one at a time, as the README says the concurrent target must appear to.

    `leads=None` models dry run, which does not check lead ids.
    """
    opps, roles = dict(opps), dict(roles)
    held: dict[RoleKey, list[tuple[int, Message]]] = {}  # insertion-ordered
    out: dict[int, str] = {}

    def apply_role(seq: int, rec: dict[str, Any]) -> bool:
        """False when the role must wait for its opportunity (Marketo skipped it: 'not yet')."""
        key = (rec["externalOpportunityId"], rec["leadId"], rec["role"])
        if rec.get("_sdc_deleted_at"):
            out[seq] = "deleted" if key in roles else "skipped"
            roles.pop(key, None)
            return True
        if key[0] not in opps:
            return False
        if leads is not None and key[1] not in leads:
            out[seq] = "skipped"
            return True
        out[seq] = "updated" if key in roles else "created"
        roles[key] = rec.get("isPrimary")
        return True

    for seq, message in enumerate(records, 1):
        rec = message["record"]
        if message["stream"] == "opportunities":
            eid = rec["externalOpportunityId"]
            if rec.get("_sdc_deleted_at"):
                # Roles held for it were given before the delete, which would have removed them:
                # they end now (a later re-create does not bring them back).
                for key in [k for k in held if k[0] == eid]:
                    for held_seq, held_rec in held.pop(key):
                        if not apply_role(held_seq, held_rec):
                            out[held_seq] = "skipped"
                out[seq] = "deleted" if eid in opps else "skipped"
                opps.pop(eid, None)
                roles = {k: v for k, v in roles.items() if k[0] != eid}  # deleting cascades
                continue
            out[seq] = "updated" if eid in opps else "created"
            opps[eid] = (rec["name"], rec["stage"])
            for key in [k for k in held if k[0] == eid]:
                for held_seq, held_rec in held.pop(key):
                    apply_role(held_seq, held_rec)  # the second try is final
            continue
        key = (rec["externalOpportunityId"], rec["leadId"], rec["role"])
        if key in held:  # later records for a held role wait behind it
            held[key].append((seq, rec))
        elif not apply_role(seq, rec):
            held[key] = [(seq, rec)]
    for queue in held.values():  # end of input: the opportunity never came
        for seq, rec in queue:
            if rec.get("_sdc_deleted_at"):
                apply_role(seq, rec)  # a delete needs no opportunity
            else:
                out[seq] = "skipped"
    return Expected(out, opps, roles)
