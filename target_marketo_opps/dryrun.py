"""`dry_run: true`: look records up by key and report what a real run would do; write nothing.

Records are looked up 300 keys per call and then replayed in input order against what was
found, so a record created earlier in the same input counts as existing for later ones. Roles
follow the real run's ordering: opportunities are evaluated first, and a role whose
opportunity is neither in Marketo nor (yet) in the input waits until the end of input. Lead
ids cannot be checked (the REST API has no lead lookup in this project's client).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from marketo_api import (
    MAX_BATCH,
    CrmSyncEnabledError,
    MarketoClient,
    MarketoObject,
    ObjectDescription,
    Reason,
    chunked,
)

from .records import DELETE, ConflictKey, Item, Outcome
from .results import ResultsLog
from .writer import Coordinator, crm_error

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE

_NOT_FOUND = (False, None)


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
    ) -> None:
        super().__init__(results, on_progress)
        self.client = client
        self.descriptions = descriptions
        self.batch_size = min(batch_size, MAX_BATCH)
        self.logger = logger
        self._pending: dict[MarketoObject, list[Item]] = {OPP: [], ROLE: []}
        self._fresh: collections.Counter[MarketoObject] = collections.Counter()
        # What Marketo holds, as far as this run knows: key -> (exists, marketoGUID).
        self._known: dict[ConflictKey, tuple[bool, str | None]] = {}
        # A found record's other key (marketoGUID <-> dedupe fields), so a delete by one of them
        # is seen by a later record using the other.
        self._aliases: dict[ConflictKey, ConflictKey] = {}

    def _add(self, item: Item) -> None:
        self._pending[item.obj].append(item)
        self._fresh[item.obj] += 1
        if self._fresh[item.obj] >= self.batch_size:
            self._evaluate(item.obj, final=False)
            self._on_progress()

    def _checkpoint(self, *, final: bool) -> None:
        self._evaluate(OPP, final=final)
        self._evaluate(ROLE, final=final)
        self._on_progress()

    # ---- evaluation -------------------------------------------------------------------------

    def _evaluate(self, obj: MarketoObject, *, final: bool) -> None:
        if obj is ROLE:
            self._evaluate(OPP, final=final)
        items, self._pending[obj] = self._pending[obj], []
        self._fresh[obj] = 0
        self._look_up(items)
        waiting: list[Item] = []
        kept: set[ConflictKey] = set()
        for item in items:
            if any(k in kept for k in item.conflict_keys):
                waiting.append(item)
                continue
            outcome = self._simulate(item, final=final)
            if outcome is None:
                waiting.append(item)
                kept.update(item.conflict_keys)
                continue
            self._resolve(item, outcome)
        self._pending[obj] = waiting + self._pending[obj]

    def _simulate(self, item: Item, *, final: bool) -> Outcome | None:
        """The outcome a real run would report, or None to decide later (role waiting)."""
        key = item.conflict_keys[0]
        exists, guid = self._known.get(key, _NOT_FOUND)
        if item.op == DELETE:
            if not exists:
                return Outcome("would_skip", reasons=(Reason("1013", "Object not found"),))
            self._set(item, False, None)
            return Outcome("would_delete", guid)
        if exists:
            if item.action == "createOnly":
                return Outcome("would_skip", guid, (Reason("1017", "Object already exists"),))
            return Outcome("would_update", guid)
        if item.action == "updateOnly":
            return Outcome(
                "would_skip", reasons=(Reason("1004", f"{item.obj.label.capitalize()} not found"),)
            )
        if item.obj is ROLE:
            opportunity = item.opportunity_id
            if not self._known.get(_opp_key(opportunity), _NOT_FOUND)[0]:
                if not final:
                    return None
                return Outcome(
                    "would_skip", reasons=(Reason("1004", f"Opportunity '{opportunity}' not found"),)
                )
        self._set(item, True, None)
        return Outcome("would_create")

    def _set(self, item: Item, exists: bool, guid: str | None) -> None:
        for key in item.conflict_keys:
            self._known[key] = (exists, guid)
            alias = self._aliases.get(key)
            if alias is not None:
                self._known[alias] = (exists, guid)

    # ---- lookups ----------------------------------------------------------------------------

    def _look_up(self, items: list[Item]) -> None:
        wanted: dict[tuple[MarketoObject, str], dict[ConflictKey, Any]] = collections.defaultdict(dict)
        for item in items:
            needed = list(item.conflict_keys[:1])
            if item.obj is ROLE and item.op != DELETE and item.opportunity_id:
                needed.append(_opp_key(item.opportunity_id))
            for key in needed:
                if key in self._known:
                    continue
                obj_value, kind, value = key
                obj = OPP if obj_value == OPP.value else ROLE
                wanted[(obj, kind)][key] = value
        try:
            for (obj, kind), values in wanted.items():
                for chunk in chunked(list(values.items()), MAX_BATCH):
                    self._query(obj, kind, chunk)
        except CrmSyncEnabledError as exc:
            raise crm_error(exc) from exc

    def _query(self, obj: MarketoObject, kind: str, chunk: list[tuple[ConflictKey, Any]]) -> None:
        description = self.descriptions[obj]
        dedupe = description.dedupe_fields
        fields = [description.id_field, *dedupe]
        for key, _ in chunk:
            self._known[key] = _NOT_FOUND
        if kind == "id":
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
                dedupe_key = (obj.value, "dedupe", tuple(row.get(n) for n in dedupe))
                self._known[dedupe_key] = found
                if isinstance(guid, str) and guid:
                    id_key = (obj.value, "id", guid)
                    self._known[id_key] = found
                    self._aliases[id_key] = dedupe_key
                    self._aliases[dedupe_key] = id_key


def _opp_key(external_id: str | None) -> ConflictKey:
    return (OPP.value, "dedupe", (external_id,))
