"""`dry_run: true`: look records up by key and report what a real run would do; write nothing.

Records are looked up 300 keys per call, then run through the real run's plan
(`planner.WritePlan`: the same batches, the same order, the same held roles) against a Marketo
simulated from what was found, so a record created earlier in the same input counts as existing
for later ones, a role whose opportunity is not in Marketo waits until that opportunity is
written (or the end of input), and an opportunity delete removes the roles of that opportunity.
Lead ids cannot be checked (the REST API has no lead lookup in this project's client). On a
CRM-synced instance the dry run stops with the real run's message: Marketo offers role APIs only
without CRM sync, so a roles describe (made once, even for opportunity-only input) answering 1018
is the read-only sign of it.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from marketo_api import (
    MAX_BATCH,
    CrmSyncEnabledError,
    MarketoClient,
    MarketoObject,
    ObjectDescription,
    Reason,
    chunked,
)

from .batches import Batch
from .coordinator import Coordinator, crm_error
from .planner import Send, WritePlan
from .records import Item, Outcome
from .results import ResultsLog
from .rules import may_wait_for_opportunity
from .terms import DELETE, Action, ConflictKey, KeyKind, Status

if TYPE_CHECKING:
    from .ledger import UnchangedRule

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE

_NOT_FOUND = (False, None)
#: What a real run's status would be, said of a dry run.
_WOULD = {
    Status.CREATED: Status.WOULD_CREATE,
    Status.UPDATED: Status.WOULD_UPDATE,
    Status.DELETED: Status.WOULD_DELETE,
    Status.SKIPPED: Status.WOULD_SKIP,
}


class DryRunCoordinator(Coordinator):
    def __init__(
        self,
        client: MarketoClient,
        descriptions: dict[MarketoObject, ObjectDescription],
        results: ResultsLog,
        on_progress: Callable[[], None],
        *,
        batch_size: int,
        logger: logging.Logger,
        unchanged_rule: UnchangedRule | None = None,
    ) -> None:
        super().__init__(results, on_progress, unchanged_rule=unchanged_rule)
        self.client = client
        self.descriptions = descriptions
        self.batch_size = min(batch_size, MAX_BATCH)
        self.logger = logger
        # The real run's plan; its calls are answered at once, so none is ever in flight.
        self.plan = WritePlan(batch_size=self.batch_size, max_body_bytes=2**62, max_concurrent=1)
        self._pending: list[Item] = []  # accepted, not looked up yet (input order)
        # What Marketo holds, as far as this run knows: key -> (exists, marketoGUID).
        self._known: dict[ConflictKey, tuple[bool, str | None]] = {}
        # A found record's other key (marketoGUID <-> dedupe fields), so a delete by one of them
        # is seen by a later record using the other.
        self._aliases: dict[ConflictKey, ConflictKey] = {}
        # Opportunities deleted by this (simulated) run: Marketo deleted their roles with them,
        # so a role of theirs not known yet is not looked up but known not to exist.
        self._cascaded: set[str] = set()
        self._crm_checked = False

    def _add(self, item: Item) -> None:
        self._pending.append(item)
        if len(self._pending) >= self.batch_size:
            self._evaluate(final=False)
            self._on_progress()

    def _checkpoint(self, *, final: bool) -> None:
        self._evaluate(final=final)
        self._on_progress()

    def _resolve(self, item: Item, outcome: Outcome) -> None:
        super()._resolve(item, outcome)
        self.plan.final(item)

    # ---- evaluation -------------------------------------------------------------------------

    def _evaluate(self, *, final: bool) -> None:
        """Look the pending records up, then run them through the plan as a real run would."""
        items, self._pending = self._pending, []
        if items:
            self._check_crm()
        self._look_up(items)
        plan = self.plan
        for item in items:
            plan.add(item)
            self._run()
        while True:
            plan.flush()
            self._run()
            released = plan.release(final=False)
            if not released and final and plan.held:
                # Every opportunity of the input is written: roles still held cannot be written.
                released = plan.release(final=True)
            self._resolve_ended()
            if not released:
                return
            for item in released:
                plan.enqueue(item)

    def _run(self) -> None:
        """Answer every batch the plan sends, at once, from the simulated Marketo."""
        plan = self.plan
        while True:
            step = plan.step()
            self._resolve_ended()
            if step is None:
                return
            assert isinstance(step, Send), "a dry run has no call in flight to wait for"
            self._answer(step.batch)

    def _answer(self, batch: Batch) -> None:
        outcomes = [self._simulate(item) for item in batch.items]
        self.plan.note_answers(batch, outcomes)
        for item, outcome in zip(batch.items, outcomes, strict=True):
            if not self.plan.hold_if_waiting(item, outcome, opportunity_in_doubt=_never):
                self._resolve(item, _would(outcome))

    def _resolve_ended(self) -> None:
        for item, outcome in self.plan.take_finals():
            self._resolve(item, _would(outcome))

    def _check_crm(self) -> None:
        if self._crm_checked:
            return
        self._crm_checked = True
        try:
            self._description(ROLE)
        except CrmSyncEnabledError as exc:
            raise crm_error(exc) from exc

    def _simulate(self, item: Item) -> Outcome:
        """What Marketo would answer for the record now, in the real run's statuses."""
        key = item.conflict_keys[0]
        exists, guid = self._known.get(key, _NOT_FOUND)
        if item.op == DELETE:
            if not exists:
                return Outcome(Status.SKIPPED, reasons=(Reason("1013", "Object not found"),))
            if item.obj is OPP:
                self._cascade(item)  # first: it may need the marketoGUID's alias, which _set drops
            self._set(item, False, None)
            return Outcome(Status.DELETED, guid)
        if exists:
            if item.action == Action.CREATE_ONLY:
                return Outcome(Status.SKIPPED, guid, (Reason("1017", "Object already exists"),))
            return Outcome(Status.UPDATED, guid)
        if item.action == Action.UPDATE_ONLY:
            return Outcome(
                Status.SKIPPED, reasons=(Reason("1004", f"{item.obj.label.capitalize()} not found"),)
            )
        if may_wait_for_opportunity(item):  # the real run holds such a role until it is written
            opportunity = item.opportunity_id
            if not self._known.get(ConflictKey.of_opportunity(opportunity), _NOT_FOUND)[0]:
                return Outcome(Status.SKIPPED, reasons=(Reason("1004", _missing_opportunity(opportunity)),))
        self._set(item, True, None)
        return Outcome(Status.CREATED)

    def _opportunity_of(self, item: Item) -> str | None:
        """An opportunity record's externalOpportunityId; by marketoGUID alone, if looked up."""
        if item.opportunity_id is not None:
            return item.opportunity_id
        alias = self._aliases.get(item.conflict_keys[0])
        if alias is None or alias.kind != KeyKind.DEDUPE or not alias.value:
            return None
        opportunity = alias.value[0]
        return opportunity if isinstance(opportunity, str) else None

    def _cascade(self, item: Item) -> None:
        """An opportunity delete removes the opportunity's roles in Marketo."""
        opportunity = self._opportunity_of(item)
        if opportunity is None:
            return
        self._cascaded.add(opportunity)
        for key in list(self._known):
            if key.role_opportunity() == opportunity:
                self._known[key] = _NOT_FOUND
                alias = self._aliases.get(key)
                if alias is not None:
                    self._known[alias] = _NOT_FOUND
                    self._forget_alias(key, alias)

    def _set(self, item: Item, exists: bool, guid: str | None) -> None:
        for key in item.conflict_keys:
            self._known[key] = (exists, guid)
            alias = self._aliases.get(key)
            if alias is not None:
                self._known[alias] = (exists, guid)
                if not exists:
                    self._forget_alias(key, alias)

    def _forget_alias(self, key: ConflictKey, alias: ConflictKey) -> None:
        """A deleted record's marketoGUID is gone for good: re-creating it gives a new one."""
        self._aliases.pop(key, None)
        self._aliases.pop(alias, None)

    # ---- lookups ----------------------------------------------------------------------------

    def _look_up(self, items: list[Item]) -> None:
        wanted: dict[tuple[MarketoObject, str], dict[ConflictKey, Any]] = collections.defaultdict(dict)
        for item in items:
            needed = list(item.conflict_keys[:1])
            if item.obj is ROLE and item.op != DELETE and item.opportunity_id:
                needed.append(ConflictKey.of_opportunity(item.opportunity_id))
            for key in needed:
                if key in self._known:
                    continue
                if key.role_opportunity() in self._cascaded:
                    self._known[key] = _NOT_FOUND  # deleted with its opportunity in this run
                    continue
                obj = OPP if key.object == OPP.value else ROLE
                wanted[(obj, key.kind)][key] = key.value
        try:
            for (obj, kind), values in wanted.items():
                for chunk in chunked(list(values.items()), MAX_BATCH):
                    self._query(obj, kind, chunk)
        except CrmSyncEnabledError as exc:
            raise crm_error(exc) from exc

    def _description(self, obj: MarketoObject) -> ObjectDescription:
        """The object's describe; made here when no record of that object was built (a roles-only
        input still looks its opportunities up)."""
        description = self.descriptions.get(obj)
        if description is None:
            description = self.descriptions[obj] = self.client.describe(obj)
        return description

    def _query(self, obj: MarketoObject, kind: str, chunk: list[tuple[ConflictKey, Any]]) -> None:
        description = self._description(obj)
        dedupe = description.dedupe_fields
        fields = [description.id_field, *dedupe]
        for key, _ in chunk:
            self._known[key] = _NOT_FOUND
        if kind == KeyKind.ID:
            # A marketoGUID with a comma cannot exist (and the compound form is for dedupe fields).
            keys = [{description.id_field: v} for _, v in chunk if "," not in str(v)]
        else:
            keys = [dict(zip(dedupe, v, strict=True)) for _, v in chunk]
        if not keys:
            return
        for page in self.client.lookup(obj, keys, fields=fields):
            for row in page:
                guid = row.get(description.id_field)
                found = (True, guid if isinstance(guid, str) else None)
                dedupe_key = ConflictKey.dedupe(obj, tuple(row.get(n) for n in dedupe))
                self._known[dedupe_key] = found
                if isinstance(guid, str) and guid:
                    id_key = ConflictKey.guid(obj, guid)
                    self._known[id_key] = found
                    self._aliases[id_key] = dedupe_key
                    self._aliases[dedupe_key] = id_key


def _missing_opportunity(external_id: str | None) -> str:
    # Marketo's docs do not say which code it gives such a role; the sandbox's default is 1004.
    return (
        f"Opportunity '{external_id}' not found (Marketo may answer this with 1004, 1013 or 1003; "
        "its docs do not say)"
    )


def _would(outcome: Outcome) -> Outcome:
    return replace(outcome, status=_WOULD[outcome.status])


def _never(opportunity_id: str | None) -> bool:
    return False  # a dry run loses no answer
