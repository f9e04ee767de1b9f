"""Sync and delete as Marketo applies them: the record-level checks, in the README's order
(design choices 19 to 24), and the writes.

A call is handled as one batch: the checks that need no data first, record by record; then one
lookup for every key; then the checks that need the data, and one write per kind of change.
That gives the same answers as handling the records one by one, because the records that
survive the first checks of a sync have distinct keys (a repeat is 1036), so none of them can
find or miss a row because of another's write; a delete, which has no 1036, tracks what it has
already deleted.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .config import MISSING_OPPORTUNITY_ANSWERS
from .database import Database, Hit
from .schema import (
    INTEGER_TYPES,
    FieldDef,
    InvalidValue,
    ObjectSchema,
    coerce,
    filter_key,
    invalid_value_message,
)
from .tables import OPPORTUNITIES, ROLES, Record, Table, fold, text_out

CRM_SKIP_MESSAGE = (
    "CRM Enabled: the instance has a native CRM integration, opportunities and roles are read-only"
)
SALES_PERSON_MESSAGE = "ExternalSalesPersonID '{id}' not found"
NOT_AN_OBJECT = "Invalid input: each input record must be a JSON object"

Key = tuple[Any, ...]
#: A sync record that passed the checks needing no data: (seq, its values, key, key as compared).
Valid = tuple[int, Record, Key, Key]


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def skipped(seq: int, code: str, message: str) -> Record:
    return {"seq": seq, "status": "skipped", "reasons": [{"code": code, "message": message}]}


def guid_from_int(value: int) -> str:
    """Format 128 random bits as a version-4 UUID string."""
    value &= ~(0xF000 << 64)
    value |= 0x4000 << 64
    value &= ~(0xC000 << 48)
    value |= 0x8000 << 48
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Batch:
    """One sync or delete call on one object type; ``fold_case`` matches string keys case-insensitively."""

    def __init__(self, db: Database, tables: Mapping[str, Table], obj: str, fold_case: bool) -> None:
        self.db = db
        self.tables = tables
        self.table = tables[obj]
        self.schema = self.table.schema
        self.fold = fold_case

    def key_fields(self, by: str) -> tuple[str, ...]:
        return (self.schema.id_field,) if by == "idField" else tuple(self.schema.dedupe_fields)

    def compared(self, key: Key) -> Key:
        return tuple(map(fold, key)) if self.fold else key

    # ------------------------------------------------------------------ sync
    def sync(
        self,
        action: str,
        dedupe_by: str,
        records: list[Any],
        skip: Mapping[int, Record],
        *,
        missing_opportunity_code: str,
        check_sales_person: bool,
        guid_rng: random.Random,
    ) -> list[Record]:
        key_fields = self.key_fields(dedupe_by)
        results: list[Record] = [{} for _ in records]
        valid: list[Valid] = []
        seen: set[Key] = set()
        with self.db.writing():
            for seq, rec in enumerate(records):
                if seq in skip:
                    results[seq] = skip[seq]
                    continue
                values, refused = sync_values(self.schema, seq, rec, action, key_fields)
                if refused is None and check_sales_person:
                    refused = self._unknown_sales_person(seq, values)
                if refused is not None:
                    results[seq] = refused
                    continue
                key = tuple([values[n] for n in key_fields])
                compared = self.compared(key)
                if compared in seen:
                    results[seq] = skipped(seq, "1036", "Duplicate object found in input")
                    continue
                seen.add(compared)
                valid.append((seq, values, key, compared))
            found = self.db.lookup(self.table, key_fields, [v[2] for v in valid], self.fold)
            self._apply_sync(
                valid,
                found,
                results,
                action=action,
                key_fields=key_fields,
                missing_opportunity_code=missing_opportunity_code,
                guid_rng=guid_rng,
            )
        return results

    def _unknown_sales_person(self, seq: int, values: Record) -> Record | None:
        sales_person = values.get("externalSalesPersonId")
        if sales_person is None or self.db.existing("sales_persons", [sales_person]):
            return None
        return skipped(seq, "718", SALES_PERSON_MESSAGE.format(id=sales_person))

    def _apply_sync(
        self,
        valid: list[Valid],
        found: dict[Key, list[Hit]],
        results: list[Record],
        *,
        action: str,
        key_fields: tuple[str, ...],
        missing_opportunity_code: str,
        guid_rng: random.Random,
    ) -> None:
        """Steps 6 to 9 (they need the data), then the inserts and updates."""
        table, schema = self.table, self.schema
        label = "Opportunity" if table.name == OPPORTUNITIES else "Opportunity role"
        parents, leads = self._role_parents(valid, found)
        now = utc_now()
        creates: list[tuple[int, Record]] = []
        updates: dict[tuple[str, ...], list[list[Any]]] = {}
        for seq, values, _, compared in valid:
            hit = found.get(compared)
            if action == "updateOnly" and hit is None:
                results[seq] = skipped(seq, "1004", f"{label} not found")
            elif action == "createOnly" and hit is not None:
                results[seq] = skipped(seq, "1017", "Object already exists")
            elif (
                table.name == OPPORTUNITIES
                and (hit is None or "name" in values)
                and values.get("name") is None
            ):
                results[seq] = skipped(seq, "1003", "Value for required field 'name' not specified")
            elif (
                hit is None
                and table.name == ROLES
                and self.compared((values["externalOpportunityId"],)) not in parents
            ):
                ext = values["externalOpportunityId"]
                message = MISSING_OPPORTUNITY_ANSWERS[missing_opportunity_code].format(ext=ext)
                results[seq] = skipped(seq, missing_opportunity_code, message)
            elif hit is None and table.name == ROLES and values["leadId"] not in leads:
                results[seq] = skipped(seq, "1004", f"Lead '{values['leadId']}' not found")
            elif hit is None:
                creates.append((seq, values))
            else:
                row, guid, _ = hit[0]
                changes = {
                    n: v for n, v in values.items() if n not in key_fields and schema.by_name[n].updateable
                }
                changes["updatedAt"] = now
                updates.setdefault(tuple(changes), []).append([*changes.values(), row])
                results[seq] = {"seq": seq, "status": "updated", "marketoGUID": text_out(guid)}
        new: list[Record] = []
        for (seq, values), guid in zip(creates, self._new_guids(guid_rng, len(creates)), strict=True):
            new.append({**values, "marketoGUID": guid, "createdAt": now, "updatedAt": now})
            results[seq] = {"seq": seq, "status": "created", "marketoGUID": guid}
        self.db.insert(table, new)
        for names, rows in updates.items():
            self.db.execute_many(table.update_sql(names), table.encoded(names, rows))

    def _role_parents(
        self, valid: list[Valid], found: dict[Key, list[Hit]]
    ) -> tuple[dict[Key, list[Hit]], set[Any]]:
        """For roles to be created: which of their opportunities (by compared key) and leads exist."""
        if self.table.name != ROLES:
            return {}, set()
        new = [values for _, values, _, compared in valid if compared not in found]
        keys = [(values["externalOpportunityId"],) for values in new]
        parents = self.db.lookup(self.tables[OPPORTUNITIES], ("externalOpportunityId",), keys, self.fold)
        return parents, self.db.existing("leads", [values["leadId"] for values in new])

    def _new_guids(self, rng: random.Random, n: int) -> list[str]:
        """``n`` random marketoGUIDs no record has: drawn as if one by one, checked all at once."""
        state = rng.getstate()
        guids = [guid_from_int(rng.getrandbits(128)) for _ in range(n)]
        if len(set(guids)) == n and not self._taken(guids):
            return guids
        rng.setstate(state)  # a collision (practically never): draw again, one by one
        guids = []
        while len(guids) < n:
            guid = guid_from_int(rng.getrandbits(128))
            if guid not in guids and not self._taken([guid]):
                guids.append(guid)
        return guids

    def _taken(self, guids: list[str]) -> bool:
        return bool(self.db.lookup(self.table, ("marketoGUID",), [(g,) for g in guids], False))

    # ------------------------------------------------------------------ delete
    def delete(self, delete_by: str, records: list[Any], skip: Mapping[int, Record]) -> list[Record]:
        key_fields = self.key_fields(delete_by)
        results: list[Record] = [{} for _ in records]
        valid: list[tuple[int, Key]] = []
        for seq, rec in enumerate(records):
            if seq in skip:
                results[seq] = skip[seq]
                continue
            key, refused = delete_key(self.schema, seq, rec, key_fields)
            if refused is not None:
                results[seq] = refused
            else:
                valid.append((seq, key))
        with self.db.writing():
            found = self.db.lookup(self.table, key_fields, [key for _, key in valid], self.fold)
            deleted: dict[int, Any] = {}  # row id -> its externalOpportunityId, as stored
            for seq, key in valid:
                hit = next((h for h in found.get(self.compared(key), []) if h[0] not in deleted), None)
                if hit is None:  # also a key repeated in the call, the second time
                    results[seq] = skipped(seq, "1013", "Object not found")
                    continue
                row, guid, external_id = hit
                deleted[row] = external_id
                results[seq] = {"seq": seq, "marketoGUID": text_out(guid), "status": "deleted"}
            self.db.execute_many(f"DELETE FROM {self.table.name} WHERE _row = ?", [[row] for row in deleted])  # noqa: S608
            if self.table.name == OPPORTUNITIES and deleted:  # their roles go with them
                keys = [(text_out(e),) for e in deleted.values()]
                where, params = self.db.where(self.tables[ROLES], ("externalOpportunityId",), keys, self.fold)
                self.db.execute(f"DELETE FROM {ROLES} WHERE {where}", params)  # noqa: S608
        return results


def sync_values(
    schema: ObjectSchema, seq: int, rec: Any, action: str, key_fields: tuple[str, ...]
) -> tuple[Record, Record | None]:
    """A sync record's values as stored, or why it is skipped (steps 1 to 4, and 1003 for a
    ``createOnly`` record carrying its id)."""
    if not isinstance(rec, dict):
        return {}, skipped(seq, "1003", NOT_AN_OBJECT)
    for name in rec:
        if name not in schema.by_name:
            return {}, skipped(seq, "1006", f"Field '{name}' not found")
    if action == "createOnly" and rec.get(schema.id_field) not in (None, ""):
        return {}, skipped(seq, "1003", f"Invalid data: '{schema.id_field}' cannot be sent with createOnly")
    values: Record = {}
    for name, raw in rec.items():
        fdef: FieldDef = schema.by_name[name]
        if name in key_fields or fdef.updateable:
            try:
                values[name] = coerce(fdef, raw)
            except InvalidValue:
                return {}, skipped(seq, "1001", invalid_value_message(raw, fdef))
    for name in key_fields:
        if values.get(name) is None:
            return {}, skipped(seq, "1003", f"Value for required field '{name}' not specified")
    return values, None


def delete_key(
    schema: ObjectSchema, seq: int, rec: Any, key_fields: tuple[str, ...]
) -> tuple[Key, Record | None]:
    """A delete record's key, or why it is skipped; other members are ignored."""
    if not isinstance(rec, dict):
        return (), skipped(seq, "1003", NOT_AN_OBJECT)
    missing = [n for n in key_fields if rec.get(n) is None or rec.get(n) == ""]
    if missing:
        return (), skipped(seq, "1003", f"Value for required field '{missing[0]}' not specified")
    fdefs = [schema.by_name[n] for n in key_fields]
    key = tuple(filter_key(f, rec[f.name]) for f in fdefs)
    bad = [f for f, k in zip(fdefs, key, strict=True) if k is None and f.data_type in INTEGER_TYPES]
    if bad:
        return (), skipped(seq, "1001", invalid_value_message(rec[bad[0].name], bad[0]))
    if any(k is None for k in key):
        return (), skipped(seq, "1013", "Object not found")
    return key, None
