"""The Marketo data store: opportunities, opportunity roles, lead ids and sales persons in SQLite.

Records are kept in their API representation (currency as a 2-decimal string, dates as
``YYYY-MM-DD``, datetimes as ``YYYY-MM-DDTHH:MM:SSZ``); null fields are simply absent. SQLite's
indexes on every searchable field keep exact-match queries with 300 values fast on millions of
rows (see :mod:`.tables` for the mapping, :mod:`.database` for the connection, :mod:`.changes`
for sync and delete).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from . import changes
from .changes import CRM_SKIP_MESSAGE, SALES_PERSON_MESSAGE, guid_from_int, skipped, utc_now
from .database import Database
from .schema import ObjectSchema
from .tables import OPPORTUNITIES, ROLES, Record, Table, text_out

__all__ = [
    "CRM_SKIP_MESSAGE",
    "OPPORTUNITIES",
    "ROLES",
    "SALES_PERSON_MESSAGE",
    "Record",
    "Store",
    "guid_from_int",
    "skipped",
    "utc_now",
]

#: The largest OFFSET SQLite takes; a page token may carry any 64-bit offset.
_MAX_OFFSET = 2**63 - 1


class Store:
    """Thread-safe store used by the HTTP handlers; tests may read it directly via ``sb.store``.

    ``path`` is an SQLite database file (its sandbox tables are replaced) or ``":memory:"``.
    """

    def __init__(
        self,
        opportunity_schema: ObjectSchema,
        role_schema: ObjectSchema,
        seed: int = 7,
        path: str = ":memory:",
    ) -> None:
        self.opportunity_schema = opportunity_schema
        self.role_schema = role_schema
        self._tables = {
            OPPORTUNITIES: Table(OPPORTUNITIES, opportunity_schema),
            ROLES: Table(ROLES, role_schema),
        }
        self._guid_rng = random.Random(f"marketo-sandbox-new-guids-{seed}")
        self._db = Database(path, self._tables.values())
        self.lock = self._db.lock

    # ------------------------------------------------------------------ reads
    def schema(self, obj: str) -> ObjectSchema:
        return self._tables[obj].schema

    def opportunities(self) -> list[Record]:
        """All opportunities in creation order (copies, API representation, nulls omitted)."""
        return self._all(OPPORTUNITIES)

    def roles(self) -> list[Record]:
        """All opportunity roles in creation order (copies, API representation, nulls omitted)."""
        return self._all(ROLES)

    def _all(self, obj: str) -> list[Record]:
        table = self._tables[obj]
        rows = self._db.all_rows(table)
        return table.records(table.columns, rows, rare=self._db.rare)

    def opportunity(self, external_opportunity_id: str) -> Record | None:
        return self._one(OPPORTUNITIES, (external_opportunity_id,))

    def role(self, external_opportunity_id: str, lead_id: int, role: str) -> Record | None:
        return self._one(ROLES, (external_opportunity_id, lead_id, role))

    def _one(self, obj: str, key: tuple[Any, ...]) -> Record | None:
        table = self._tables[obj]
        with self.lock:
            fields = tuple(table.schema.dedupe_fields)
            rows = self._db.match(table, table.columns, fields, [key], False)
            return table.records(table.columns, rows[:1], rare=self._db.rare)[0] if rows else None

    def lead_ids(self) -> list[int]:
        return sorted(int(v) for v in self._db.values("leads"))

    def sales_persons(self) -> list[str]:
        """The externalSalesPersonId values that exist (seeded, or added with add_sales_persons)."""
        return sorted(map(text_out, self._db.values("sales_persons")))

    def unknown_sales_person(self, records: list[Any]) -> str | None:
        """The first externalSalesPersonId in ``records`` that names no known sales person."""
        named = [r.get("externalSalesPersonId") if isinstance(r, dict) else None for r in records]
        named = [v for v in named if isinstance(v, str) and v]
        with self.lock:
            known = self._db.existing("sales_persons", named)
        return next((v for v in named if v not in known), None)

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {
                "opportunities": self._db.count(OPPORTUNITIES),
                "opportunity_roles": self._db.count(ROLES),
                "leads": self._db.count("leads"),
            }

    # ------------------------------------------------------------------ writes outside the API
    def add_leads(self, ids: Iterable[int]) -> None:
        self._db.add_values("leads", [int(i) for i in ids])

    def add_sales_persons(self, ids: Iterable[str]) -> None:
        self._db.add_values("sales_persons", [str(i) for i in ids])

    def clear(self, *, leads: bool = False) -> None:
        """Remove every opportunity and role (and the lead ids too when ``leads=True``)."""
        with self._db.writing():
            for name in self._tables:
                self._db.delete_all(name)
            if leads:
                self._db.delete_all("leads")

    def load(self, leads: Iterable[int], opportunities: Iterable[Record], roles: Iterable[Record]) -> None:
        """Bulk-load seed data (records must already be in API representation)."""
        opportunities = list(opportunities)
        with self._db.writing():
            self.add_leads(leads)
            self.add_sales_persons(
                o["externalSalesPersonId"] for o in opportunities if o.get("externalSalesPersonId")
            )
            self._db.insert(self._tables[OPPORTUNITIES], opportunities)
            self._db.insert(self._tables[ROLES], list(roles))

    # ------------------------------------------------------------------ the API
    def query(
        self,
        obj: str,
        *,
        filter_fields: tuple[str, ...],
        keys: list[tuple[Any, ...]],
        out_fields: list[str],
        offset: int,
        limit: int,
        fold: bool = False,
    ) -> tuple[list[Record], bool]:
        """One page of matching records (with ``seq``), in creation order, and whether more follow.

        ``fold`` compares strings case-insensitively (one plausible Marketo behaviour)."""
        table = self._tables[obj]
        with self.lock:
            where, params = self._db.where(table, filter_fields, keys, fold)
            # Row ids first, from the index alone; then the page's columns for those rows only.
            page = f"SELECT _row FROM {table.name} WHERE {where} ORDER BY _row LIMIT ? OFFSET ?"  # noqa: S608
            sql = table.select_sql(out_fields, f"_row IN ({page})", "ORDER BY _row")
            rows = self._db.execute(sql, [*params, limit + 1, min(offset, _MAX_OFFSET)]).fetchall()
            return table.records(out_fields, rows[:limit], numbered=True, rare=self._db.rare), len(
                rows
            ) > limit

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
        batch = changes.Batch(self._db, self._tables, obj, fold)
        return batch.sync(
            action,
            dedupe_by,
            records,
            skip or {},
            missing_opportunity_code=missing_opportunity_code,
            check_sales_person=check_sales_person,
            guid_rng=self._guid_rng,
        )

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
        return changes.Batch(self._db, self._tables, obj, fold).delete(delete_by, records, skip or {})
