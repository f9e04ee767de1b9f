"""The in-memory Marketo data store: opportunities, opportunity roles and lead ids.

Records are kept in their API representation (currency as a 2-decimal string, dates as
``YYYY-MM-DD``, datetimes as ``YYYY-MM-DDTHH:MM:SSZ``); null fields are simply absent. Every
searchable field is indexed (value -> row ids in creation order), so exact-match queries with
300 values stay fast on millions of rows. One re-entrant lock guards everything.
"""

from __future__ import annotations

import bisect
import random
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from .config import MISSING_OPPORTUNITY_ANSWERS
from .schema import (
    INTEGER_TYPES,
    FieldDef,
    InvalidValue,
    ObjectSchema,
    coerce,
    filter_key,
    invalid_value_message,
)

OPPORTUNITIES = "opportunities"
ROLES = "roles"

CRM_SKIP_MESSAGE = (
    "CRM Enabled: the instance has a native CRM integration, opportunities and roles are read-only"
)

SALES_PERSON_MESSAGE = "ExternalSalesPersonID '{id}' not found"

Record = dict[str, Any]


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


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


class Table:
    """Rows of one object type plus its indexes."""

    def __init__(self, schema: ObjectSchema, unique: list[str], multi: list[str]) -> None:
        self.schema = schema
        self.rows: dict[int, Record] = {}
        self.next_row = 0
        self.unique: dict[str, dict[Any, int]] = {f: {} for f in unique}
        self.multi: dict[str, dict[Any, list[int]]] = {f: {} for f in multi}
        self.compound_fields: tuple[str, ...] | None = (
            tuple(schema.dedupe_fields) if len(schema.dedupe_fields) > 1 else None
        )
        self.compound: dict[tuple[Any, ...], int] = {}
        self.version = 0
        # Case-folded views of the indexes, built on demand and dropped when the table changes.
        self._folded: dict[str, tuple[int, dict[Any, list[int]]]] = {}

    def clear(self) -> None:
        self.rows.clear()
        for u in self.unique.values():
            u.clear()
        for m in self.multi.values():
            m.clear()
        self.compound.clear()
        self.version += 1

    def _index(self, row: int, rec: Record) -> None:
        for name, idx in self.unique.items():
            value = rec.get(name)
            if value is not None:
                idx[value] = row
        for name, midx in self.multi.items():
            value = rec.get(name)
            if value is not None:
                lst = midx.get(value)
                if lst is None:
                    midx[value] = [row]
                elif lst[-1] < row:
                    lst.append(row)
                else:
                    bisect.insort(lst, row)
        if self.compound_fields is not None:
            self.compound[tuple(rec.get(f) for f in self.compound_fields)] = row

    def _unindex(self, row: int, rec: Record, names: Iterable[str] | None = None) -> None:
        wanted = set(names) if names is not None else None
        for name, idx in self.unique.items():
            if wanted is not None and name not in wanted:
                continue
            value = rec.get(name)
            if value is not None and idx.get(value) == row:
                del idx[value]
        for name, midx in self.multi.items():
            if wanted is not None and name not in wanted:
                continue
            value = rec.get(name)
            if value is None:
                continue
            lst = midx.get(value)
            if lst is None:
                continue
            pos = bisect.bisect_left(lst, row)
            if pos < len(lst) and lst[pos] == row:
                del lst[pos]
                if not lst:
                    del midx[value]
        if self.compound_fields is not None and wanted is None:
            key = tuple(rec.get(f) for f in self.compound_fields)
            if self.compound.get(key) == row:
                del self.compound[key]

    def insert(self, rec: Record) -> int:
        row = self.next_row
        self.next_row += 1
        self.rows[row] = rec
        self._index(row, rec)
        self.version += 1
        return row

    def bulk_insert(self, records: Iterable[Record]) -> None:
        """Insert many new rows; faster than ``insert`` because it indexes field by field."""
        recs = list(records)
        start = self.next_row
        self.next_row += len(recs)
        self.rows.update(zip(range(start, start + len(recs)), recs, strict=True))
        for name, idx in self.unique.items():
            for row, rec in enumerate(recs, start):
                value = rec.get(name)
                if value is not None:
                    idx[value] = row
        for name, midx in self.multi.items():
            get = midx.get
            for row, rec in enumerate(recs, start):
                value = rec.get(name)
                if value is None:
                    continue
                lst = get(value)
                if lst is None:
                    midx[value] = [row]
                else:
                    lst.append(row)  # new rows are larger than every existing row: stays sorted
        if self.compound_fields is not None:
            a, b, c = self.compound_fields
            self.compound.update(
                ((rec.get(a), rec.get(b), rec.get(c)), row) for row, rec in enumerate(recs, start)
            )
        self.version += 1

    def remove(self, row: int) -> Record:
        rec = self.rows.pop(row)
        self._unindex(row, rec)
        self.version += 1
        return rec

    def update(self, row: int, changes: Record) -> None:
        """Apply changes (a None value removes the field); keeps the indexes right."""
        rec = self.rows[row]
        indexed = [n for n in changes if n in self.unique or n in self.multi]
        if indexed:
            self._unindex(row, rec, indexed)
        for name, value in changes.items():
            if value is None:
                rec.pop(name, None)
            else:
                rec[name] = value
        if indexed:
            for name in indexed:
                value = rec.get(name)
                if value is None:
                    continue
                if name in self.unique:
                    self.unique[name][value] = row
                else:
                    lst = self.multi[name].setdefault(value, [])
                    bisect.insort(lst, row)
        self.version += 1

    def find(self, fields: tuple[str, ...], key: tuple[Any, ...]) -> int | None:
        """The row with this exact key (a unique field or the compound dedupe key)."""
        if len(fields) == 1:
            name = fields[0]
            if name in self.unique:
                return self.unique[name].get(key[0])
            rows = self.multi.get(name, {}).get(key[0])
            return rows[0] if rows else None
        if fields == self.compound_fields:
            return self.compound.get(key)
        return None

    def folded_index(self, fields: tuple[str, ...]) -> dict[Any, list[int]]:
        """Case-folded key -> rows, for one indexed field or the compound key."""
        name = ",".join(fields)
        cached = self._folded.get(name)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        folded: dict[Any, list[int]] = {}
        if len(fields) == 1 and fields[0] in self.unique:
            for value, row in self.unique[fields[0]].items():
                folded.setdefault(_fold(value), []).append(row)
        elif len(fields) == 1 and fields[0] in self.multi:
            for value, rows in self.multi[fields[0]].items():
                folded.setdefault(_fold(value), []).extend(rows)
        elif fields == self.compound_fields:
            for key, row in self.compound.items():
                folded.setdefault(tuple(_fold(v) for v in key), []).append(row)
        self._folded[name] = (self.version, folded)
        return folded

    def find_key(self, fields: tuple[str, ...], key: tuple[Any, ...], *, fold: bool) -> int | None:
        """As :meth:`find`; ``fold`` ignores the case of strings (the first such row)."""
        if not fold:
            return self.find(fields, key)
        rows = self.folded_index(fields).get(_fold(key[0]) if len(fields) == 1 else tuple(map(_fold, key)))
        return rows[0] if rows else None

    def match(self, fields: tuple[str, ...], keys: list[tuple[Any, ...]], *, fold: bool = False) -> list[int]:
        """Row ids matching any of the keys, in creation order, without duplicates.

        ``fold`` compares strings case-insensitively (one plausible Marketo behaviour)."""
        if fold:
            index = self.folded_index(fields)
            wanted = {(_fold(k[0]) if len(fields) == 1 else tuple(_fold(v) for v in k)) for k in keys}
            return sorted({row for key in wanted for row in index.get(key, ())})
        found: list[int] = []
        seen_keys: set[tuple[Any, ...]] = set()
        if len(fields) == 1 and fields[0] in self.multi:
            midx = self.multi[fields[0]]
            for key in keys:
                if key in seen_keys:
                    continue
                seen_keys.add(key)
                rows = midx.get(key[0])
                if rows:
                    found.extend(rows)
        else:
            for key in keys:
                if key in seen_keys:
                    continue
                seen_keys.add(key)
                row = self.find(fields, key)
                if row is not None:
                    found.append(row)
        found.sort()
        return found


class Store:
    """Thread-safe store used by the HTTP handlers; tests may read it directly via ``sb.store``."""

    def __init__(self, opportunity_schema: ObjectSchema, role_schema: ObjectSchema, seed: int = 7) -> None:
        self.lock = threading.RLock()
        self.opportunity_schema = opportunity_schema
        self.role_schema = role_schema
        opp_multi = [
            f
            for f in opportunity_schema.single_searchable
            if f not in ("marketoGUID", "externalOpportunityId")
        ]
        self._tables: dict[str, Table] = {
            OPPORTUNITIES: Table(opportunity_schema, ["marketoGUID", "externalOpportunityId"], opp_multi),
            ROLES: Table(role_schema, ["marketoGUID"], ["externalOpportunityId", "leadId"]),
        }
        self._leads: set[int] = set()
        self._sales_persons: set[str] = set()
        self._guid_rng = random.Random(f"marketo-sandbox-new-guids-{seed}")
        self._cache: OrderedDict[tuple[str, int, str], list[int]] = OrderedDict()

    # ------------------------------------------------------------------ public helpers
    def schema(self, obj: str) -> ObjectSchema:
        return self._tables[obj].schema

    def opportunities(self) -> list[Record]:
        """All opportunities in creation order (copies, API representation, nulls omitted)."""
        with self.lock:
            return [dict(r) for r in self._tables[OPPORTUNITIES].rows.values()]

    def roles(self) -> list[Record]:
        """All opportunity roles in creation order (copies, API representation, nulls omitted)."""
        with self.lock:
            return [dict(r) for r in self._tables[ROLES].rows.values()]

    def lead_ids(self) -> list[int]:
        with self.lock:
            return sorted(self._leads)

    def add_leads(self, ids: Iterable[int]) -> None:
        with self.lock:
            self._leads.update(int(i) for i in ids)

    def sales_persons(self) -> list[str]:
        """The externalSalesPersonId values that exist (seeded, or added with add_sales_persons)."""
        with self.lock:
            return sorted(self._sales_persons)

    def add_sales_persons(self, ids: Iterable[str]) -> None:
        with self.lock:
            self._sales_persons.update(str(i) for i in ids)

    def unknown_sales_person(self, records: list[Any]) -> str | None:
        """The first externalSalesPersonId in ``records`` that names no known sales person."""
        with self.lock:
            for rec in records:
                value = rec.get("externalSalesPersonId") if isinstance(rec, dict) else None
                if isinstance(value, str) and value and value not in self._sales_persons:
                    return value
            return None

    def clear(self, *, leads: bool = False) -> None:
        """Remove every opportunity and role (and the lead ids too when ``leads=True``)."""
        with self.lock:
            for table in self._tables.values():
                table.clear()
            if leads:
                self._leads.clear()
            self._cache.clear()

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {
                "opportunities": len(self._tables[OPPORTUNITIES].rows),
                "opportunity_roles": len(self._tables[ROLES].rows),
                "leads": len(self._leads),
            }

    def opportunity(self, external_opportunity_id: str) -> Record | None:
        with self.lock:
            t = self._tables[OPPORTUNITIES]
            row = t.unique["externalOpportunityId"].get(external_opportunity_id)
            return dict(t.rows[row]) if row is not None else None

    def role(self, external_opportunity_id: str, lead_id: int, role: str) -> Record | None:
        with self.lock:
            t = self._tables[ROLES]
            row = t.compound.get((external_opportunity_id, lead_id, role))
            return dict(t.rows[row]) if row is not None else None

    def load(self, leads: Iterable[int], opportunities: Iterable[Record], roles: Iterable[Record]) -> None:
        """Bulk-load seed data (records must already be in API representation)."""
        with self.lock:
            self._leads.update(leads)
            opportunities = list(opportunities)
            self._sales_persons.update(
                o["externalSalesPersonId"] for o in opportunities if o.get("externalSalesPersonId")
            )
            self._tables[OPPORTUNITIES].bulk_insert(opportunities)
            self._tables[ROLES].bulk_insert(roles)
            self._cache.clear()

    # ------------------------------------------------------------------ query
    def query(
        self,
        obj: str,
        *,
        filter_fields: tuple[str, ...],
        keys: list[tuple[Any, ...]],
        out_fields: list[str],
        offset: int,
        limit: int,
        cache_key: str,
        fold: bool = False,
    ) -> tuple[list[Record], int]:
        """One page of matching records (with ``seq``) and the total number of matches."""
        with self.lock:
            table = self._tables[obj]
            ck = (obj, table.version, f"{cache_key}/{fold}")
            rows = self._cache.get(ck)
            if rows is None:
                rows = table.match(filter_fields, keys, fold=fold)
                self._cache[ck] = rows
                while len(self._cache) > 16:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(ck)
            page: list[Record] = []
            all_rows = table.rows
            for seq, row in enumerate(rows[offset : offset + limit]):
                rec = all_rows[row]
                out: Record = {"seq": seq}
                for name in out_fields:
                    value = rec.get(name)
                    if value is not None:
                        out[name] = value
                page.append(out)
            return page, len(rows)

    # ------------------------------------------------------------------ sync
    def _new_guid(self, table: Table) -> str:
        idx = table.unique["marketoGUID"]
        while True:
            guid = guid_from_int(self._guid_rng.getrandbits(128))
            if guid not in idx:
                return guid

    def sync(
        self,
        obj: str,
        action: str,
        dedupe_by: str,
        records: list[Any],
        crm_sync: bool,
        *,
        skip: Mapping[int, Record] | None = None,
        missing_opportunity_code: str = "1004",
        check_sales_person: bool = False,
        fold: bool = False,
    ) -> list[Record]:
        """Create/update records; one result per input record, in input order.

        ``skip`` maps input positions to ready-made results: those records are not processed at
        all (not applied, not counted for duplicate detection). CRM sync mode ignores it.
        ``missing_opportunity_code`` is the skip code of a role whose opportunity does not exist;
        ``check_sales_person`` skips an opportunity naming an unknown sales person with 718;
        ``fold`` matches string keys case-insensitively.
        """
        if crm_sync:
            return [skipped(i, "1018", CRM_SKIP_MESSAGE) for i in range(len(records))]
        with self.lock:
            table = self._tables[obj]
            schema = table.schema
            key_fields = (schema.id_field,) if dedupe_by == "idField" else tuple(schema.dedupe_fields)
            seen: set[tuple[Any, ...]] = set()
            now = utc_now()
            skip = skip or {}
            return [
                skip[seq]
                if seq in skip
                else self._sync_one(
                    table,
                    obj,
                    seq,
                    rec,
                    action=action,
                    key_fields=key_fields,
                    seen=seen,
                    now=now,
                    missing_opportunity_code=missing_opportunity_code,
                    check_sales_person=check_sales_person,
                    fold=fold,
                )
                for seq, rec in enumerate(records)
            ]

    def _sync_one(
        self,
        table: Table,
        obj: str,
        seq: int,
        rec: Any,
        *,
        action: str,
        key_fields: tuple[str, ...],
        seen: set[tuple[Any, ...]],
        now: str,
        missing_opportunity_code: str,
        check_sales_person: bool,
        fold: bool,
    ) -> Record:
        schema = table.schema
        if not isinstance(rec, dict):
            return skipped(seq, "1003", "Invalid input: each input record must be a JSON object")
        for name in rec:
            if name not in schema.by_name:
                return skipped(seq, "1006", f"Field '{name}' not found")
        if action == "createOnly" and rec.get(schema.id_field) not in (None, ""):
            return skipped(seq, "1003", f"Invalid data: '{schema.id_field}' cannot be sent with createOnly")
        values: Record = {}
        for name, raw in rec.items():
            fdef: FieldDef = schema.by_name[name]
            if name in key_fields or fdef.updateable:
                try:
                    values[name] = coerce(fdef, raw)
                except InvalidValue:
                    return skipped(seq, "1001", invalid_value_message(raw, fdef))
        for name in key_fields:
            if values.get(name) is None:
                return skipped(seq, "1003", f"Value for required field '{name}' not specified")
        sales_person = values.get("externalSalesPersonId")
        if check_sales_person and sales_person is not None and sales_person not in self._sales_persons:
            return skipped(seq, "718", SALES_PERSON_MESSAGE.format(id=sales_person))
        key = tuple(values[n] for n in key_fields)
        seen_key = tuple(map(_fold, key)) if fold else key
        if seen_key in seen:
            return skipped(seq, "1036", "Duplicate object found in input")
        seen.add(seen_key)
        row = table.find_key(key_fields, key, fold=fold)
        label = "Opportunity" if obj == OPPORTUNITIES else "Opportunity role"
        if action == "updateOnly" and row is None:
            return skipped(seq, "1004", f"{label} not found")
        if action == "createOnly" and row is not None:
            return skipped(seq, "1017", "Object already exists")
        if obj == OPPORTUNITIES and (row is None or "name" in values) and values.get("name") is None:
            return skipped(seq, "1003", "Value for required field 'name' not specified")
        if row is None:
            if obj == ROLES:
                ext, lead_id = values["externalOpportunityId"], values["leadId"]
                if (
                    self._tables[OPPORTUNITIES].find_key(("externalOpportunityId",), (ext,), fold=fold)
                    is None
                ):
                    message = MISSING_OPPORTUNITY_ANSWERS[missing_opportunity_code].format(ext=ext)
                    return skipped(seq, missing_opportunity_code, message)
                if lead_id not in self._leads:
                    return skipped(seq, "1004", f"Lead '{lead_id}' not found")
            guid = self._new_guid(table)
            new: Record = {}
            for fdef in schema.fields:
                if fdef.name == "marketoGUID":
                    new["marketoGUID"] = guid
                elif fdef.name in ("createdAt", "updatedAt"):
                    new[fdef.name] = now
                elif values.get(fdef.name) is not None:
                    new[fdef.name] = values[fdef.name]
            table.insert(new)
            return {"seq": seq, "status": "created", "marketoGUID": guid}
        changes = {n: v for n, v in values.items() if n not in key_fields and schema.by_name[n].updateable}
        changes["updatedAt"] = now
        table.update(row, changes)
        return {"seq": seq, "status": "updated", "marketoGUID": table.rows[row]["marketoGUID"]}

    # ------------------------------------------------------------------ delete
    def delete(
        self,
        obj: str,
        delete_by: str,
        records: list[Any],
        crm_sync: bool,
        *,
        skip: Mapping[int, Record] | None = None,
        fold: bool = False,
    ) -> list[Record]:
        """Delete records; one result per input record. ``skip`` and ``fold`` work as in :meth:`sync`."""
        if crm_sync:
            return [skipped(i, "1018", CRM_SKIP_MESSAGE) for i in range(len(records))]
        with self.lock:
            table = self._tables[obj]
            schema = table.schema
            key_fields = (schema.id_field,) if delete_by == "idField" else tuple(schema.dedupe_fields)
            results: list[Record] = []
            skip = skip or {}
            for seq, rec in enumerate(records):
                if seq in skip:
                    results.append(skip[seq])
                    continue
                if not isinstance(rec, dict):
                    results.append(
                        skipped(seq, "1003", "Invalid input: each input record must be a JSON object")
                    )
                    continue
                missing = [n for n in key_fields if rec.get(n) is None or rec.get(n) == ""]
                if missing:
                    results.append(
                        skipped(seq, "1003", f"Value for required field '{missing[0]}' not specified")
                    )
                    continue
                fdefs = [schema.by_name[n] for n in key_fields]
                key = tuple(filter_key(f, rec[f.name]) for f in fdefs)
                bad = [
                    f for f, k in zip(fdefs, key, strict=True) if k is None and f.data_type in INTEGER_TYPES
                ]
                if bad:
                    results.append(skipped(seq, "1001", invalid_value_message(rec[bad[0].name], bad[0])))
                    continue
                row = None if any(k is None for k in key) else table.find_key(key_fields, key, fold=fold)
                if row is None:
                    results.append(skipped(seq, "1013", "Object not found"))
                    continue
                removed = table.remove(row)
                if obj == OPPORTUNITIES:
                    self._cascade_roles(removed["externalOpportunityId"], fold)
                results.append({"seq": seq, "marketoGUID": removed["marketoGUID"], "status": "deleted"})
            return results

    def _cascade_roles(self, external_opportunity_id: str, fold: bool) -> None:
        roles = self._tables[ROLES]
        if fold:
            rows = roles.folded_index(("externalOpportunityId",)).get(_fold(external_opportunity_id), [])
        else:
            rows = roles.multi["externalOpportunityId"].get(external_opportunity_id, [])
        for row in list(rows):
            roles.remove(row)
