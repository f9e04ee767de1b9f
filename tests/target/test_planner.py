"""The write planner driven directly: random input, answers in random order, no threads or HTTP.

A small Marketo in a dict answers each batch when the driver chooses to (any batch in flight may
be answered first). Every send is checked against the README's ordering rules at the moment it is
made, and the end against the same sequential model the end-to-end model test uses.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from marketo_api import MarketoObject, Reason
from target_marketo_opps.batches import Batch
from target_marketo_opps.planner import Send, Wait, WritePlan
from target_marketo_opps.records import Item, Outcome, deletion
from target_marketo_opps.terms import DELETE, SYNC, Status
from tests.support.model import OPPS, ROLES, Message, RoleKey, generate, model
from tests.support.payloads import builder

OPP, ROLE = MarketoObject.OPPORTUNITY, MarketoObject.OPPORTUNITY_ROLE
LEADS = {3, 4, 5}  # the generator's lead 999 is unknown to this Marketo
CODES = ("1004", "1013", "1003")  # a role of a missing opportunity: Marketo does not say which


class DictMarketo:
    """Opportunities and roles as the model keeps them; answers like Marketo, one record at a time."""

    def __init__(self, missing_opportunity_code: str) -> None:
        self.code = missing_opportunity_code
        self.opps: dict[str, tuple[Any, Any]] = {}
        self.roles: dict[RoleKey, Any] = {}

    def answer(self, batch: Batch) -> list[Outcome]:
        return [self._one(batch.obj, batch.op, item.payload) for item in batch.items]

    def _one(self, obj: MarketoObject, op: str, payload: dict[str, Any]) -> Outcome:
        eid = payload["externalOpportunityId"]
        if obj is OPP:
            if op == DELETE:
                if eid not in self.opps:
                    return Outcome(Status.SKIPPED, reasons=(Reason("1013", "not found"),))
                del self.opps[eid]
                self.roles = {k: v for k, v in self.roles.items() if k[0] != eid}  # the cascade
                return Outcome(Status.DELETED, f"g-{eid}")
            status = Status.UPDATED if eid in self.opps else Status.CREATED
            self.opps[eid] = (payload.get("name"), payload.get("stage"))
            return Outcome(status, f"g-{eid}")
        key = (eid, payload["leadId"], payload["role"])
        if op == DELETE:
            if key not in self.roles:
                return Outcome(Status.SKIPPED, reasons=(Reason("1013", "not found"),))
            del self.roles[key]
            return Outcome(Status.DELETED)
        if eid not in self.opps:
            return Outcome(Status.SKIPPED, reasons=(Reason(self.code, "opportunity not found"),))
        if key[1] not in LEADS:
            return Outcome(Status.SKIPPED, reasons=(Reason("1004", "lead not found"),))
        status = Status.UPDATED if key in self.roles else Status.CREATED
        self.roles[key] = payload.get("isPrimary")
        return Outcome(status)


def items_of(records: list[Message]) -> list[Item]:
    builders = {OPP: builder(OPP), ROLE: builder(ROLE)}
    items = []
    for seq, message in enumerate(records, 1):
        obj = OPP if message["stream"] == "opportunities" else ROLE
        record = dict(message["record"])
        deleted, _ = deletion(record.pop("_sdc_deleted_at", None))
        item = builders[obj].build(seq, message["stream"], record, deleted=deleted)
        assert item.rejection is None
        items.append(item)
    return items


class Driver:
    """Runs a plan as the writer does, answering in an order the random source picks."""

    def __init__(self, rng: random.Random, code: str, *, batch_size: int, max_concurrent: int) -> None:
        self.rng = rng
        self.marketo = DictMarketo(code)
        self.plan = WritePlan(
            batch_size=batch_size, max_body_bytes=1024 * 1024, max_concurrent=max_concurrent
        )
        self.flying: list[Batch] = []
        self.outcomes: dict[int, Status] = {}
        self.sends = 0

    def add(self, item: Item) -> None:
        self.plan.add(item)
        self.run()
        self.pump()

    def run(self) -> None:
        while True:
            step = self.plan.step()
            self.resolve_ended()
            if step is None:
                return
            if isinstance(step, Send):
                self.check_send(step.batch)
                self.flying.append(step.batch)
                self.sends += 1
                if self.rng.random() < 0.3:  # sometimes an answer comes back at once
                    self.answer(self.rng.choice(self.flying))
            else:
                self.wait(step)

    def wait(self, step: Wait) -> None:
        awaited = list(step.batches) or [self.rng.choice(self.flying)]
        assert all(any(b is f for f in self.flying) for b in awaited), "waits for a batch not in flight"
        others = [b for b in self.flying if not any(b is a for a in awaited)]
        extra = self.rng.sample(others, k=self.rng.randint(0, len(others)))
        for batch in self.rng.sample(awaited + extra, k=len(awaited) + len(extra)):
            self.answer(batch)

    def answer(self, batch: Batch) -> None:
        self.flying = [b for b in self.flying if b is not batch]
        outcomes = self.marketo.answer(batch)
        self.plan.note_answers(batch, outcomes)
        for item, outcome in zip(batch.items, outcomes, strict=True):
            if not self.plan.hold_if_waiting(item, outcome, opportunity_in_doubt=lambda _: False):
                self.resolve(item, outcome)

    def resolve(self, item: Item, outcome: Outcome) -> None:
        assert item.seq not in self.outcomes, f"record {item.seq} got a second outcome"
        self.outcomes[item.seq] = outcome.status
        self.plan.final(item)

    def resolve_ended(self) -> None:
        for item, outcome in self.plan.take_finals():
            self.resolve(item, outcome)

    def pump(self) -> None:
        while self.plan.held and self.plan.held.changed:
            self.plan.held.changed = False
            released = self.plan.release(final=False)
            self.resolve_ended()
            if not released:
                return
            for item in released:
                self.plan.enqueue(item)
            self.run()

    def finish(self) -> None:
        """The writer's final checkpoint, without lost answers."""
        for _ in range(1000):
            self.pump()
            self.plan.flush()
            self.run()
            while self.flying:
                self.answer(self.rng.choice(self.flying))
            if self.plan.pending:
                continue
            released = self.plan.release(final=False)
            if not released and self.plan.held:
                released = self.plan.release(final=True)
            self.resolve_ended()
            if not released and not self.plan.held:
                return
            for item in released:
                self.plan.enqueue(item)
            self.run()
        raise AssertionError("the plan did not finish")

    # ---- the rules, at the moment of each send --------------------------------------------

    def waiting_items(self) -> list[Item]:
        """Records given to the plan, sent or not, without an outcome yet."""
        plan = self.plan
        batches = [*plan.open.values(), *plan.parked, *plan.ready, *self.flying]
        return [i for b in batches for i in b.items] + list(plan.held)

    def check_send(self, batch: Batch) -> None:
        pending = [i for i in self.waiting_items() if not any(i is s for s in batch.items)]
        for item in batch.items:
            earlier = [
                other
                for other in pending
                if other.obj is item.obj
                and other.seq < item.seq
                and not set(other.loose_keys).isdisjoint(item.loose_keys)
            ]
            assert not earlier, f"record {item.seq} sent before the earlier {[o.seq for o in earlier]}"
        if batch.obj is ROLE:
            assert not any(b.obj is OPP for b in self.flying), "roles sent with an opportunity call in flight"
            assert not any(k.obj is OPP and k.op == SYNC and b.items for k, b in self.plan.open.items())
        if batch.obj is OPP and batch.op == DELETE:
            ids = {i.opportunity_id for i in batch.items}
            last = max(i.seq for i in batch.items)
            before = [i.seq for i in pending if i.obj is ROLE and i.opportunity_id in ids and i.seq < last]
            assert not before, f"opportunity delete sent before the roles {before} given before it"


@pytest.mark.parametrize("seed", range(120))
def test_the_plan_keeps_the_readme_order_whatever_order_answers_come_in(seed: int) -> None:
    rng = random.Random(seed)
    _, records = generate(rng, n=rng.randint(5, 40))
    code = CODES[seed % len(CODES)]
    driver = Driver(rng, code, batch_size=rng.choice([1, 2, 3, 300]), max_concurrent=rng.choice([1, 2, 5]))
    for item in items_of(records):
        driver.add(item)
    driver.finish()
    expected = model(records, {}, {}, LEADS)
    assert driver.outcomes == expected.outcomes
    assert driver.marketo.opps == expected.opps
    assert driver.marketo.roles == expected.roles
    assert not driver.plan.pending
    assert not driver.plan.held
    assert not driver.plan.inflight


def test_the_generator_reaches_every_key() -> None:
    """The random input is worth something only if it collides: few keys, all of them used."""
    seen_opps: set[str] = set()
    seen_roles: set[str] = set()
    for seed in range(20):
        _, records = generate(random.Random(seed))
        seen_opps.update(r["record"]["externalOpportunityId"] for r in records)
        seen_roles.update(r["record"]["role"] for r in records if r["stream"] == "opportunity_roles")
    assert seen_opps == set(OPPS)
    assert seen_roles == set(ROLES)
