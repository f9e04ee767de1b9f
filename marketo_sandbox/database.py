"""The one SQLite connection behind the store, and the lookups every part of it makes.

ThreadingHTTPServer answers each request in its own thread; they share one connection
(``check_same_thread=False``) and one re-entrant lock, which serialises them as SQLite would.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .tables import Record, Table, rare_in, sql_fold

#: What a lookup finds for a key: (row id, marketoGUID, externalOpportunityId), both as stored.
Hit = tuple[int, Any, Any]
#: Side tables of plain values: lead ids and sales person ids.
VALUE_TABLES = ("leads", "sales_persons")


#: From this many rows into an empty table, its indexes are built after the rows, which is faster.
BULK_ROWS = 10_000


class Database:
    """The store's SQL, run under the one lock; a rare value (see :mod:`.tables`) is bound again
    only after SQLite refused it, so ordinary calls never look for one."""

    def __init__(self, path: str, tables: Iterable[Table]) -> None:
        self.lock = threading.RLock()
        #: Set once a rare value (see :mod:`marketo_sandbox.tables`) was stored or sought.
        self.rare = False
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=1024
        )
        self._db.create_function("fold", 1, sql_fold, deterministic=True)
        if path != ":memory:":  # a scratch file: speed over durability
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("PRAGMA temp_store = MEMORY")
        with self.writing():
            for table in tables:
                self._db.execute(f"DROP TABLE IF EXISTS {table.name}")
                self._db.execute(table.create_sql())
                for sql in table.indexes().values():
                    self._db.execute(sql)
            for name in VALUE_TABLES:
                self._db.execute(f"DROP TABLE IF EXISTS {name}")
                self._db.execute(f"CREATE TABLE {name} (id PRIMARY KEY) WITHOUT ROWID")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """One transaction per store call, committed even when the call fails half-way: what was
        applied stays applied, as it did before the store was on SQLite."""
        with self.lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except (UnicodeEncodeError, OverflowError):  # a rare value: kept off the fast path
            self.rare = True
            return self._db.execute(sql, [rare_in(p) for p in params])

    def execute_many(self, sql: str, rows: list[list[Any]]) -> None:
        if not rows:
            return
        self._db.execute("SAVEPOINT bulk")
        try:
            self._db.executemany(sql, rows)
        except (UnicodeEncodeError, OverflowError):
            self.rare = True
            self._db.execute("ROLLBACK TO bulk")
            self._db.executemany(sql, ([rare_in(v) for v in row] for row in rows))
        finally:
            self._db.execute("RELEASE bulk")

    def where(
        self, table: Table, fields: tuple[str, ...], keys: Sequence[Sequence[Any]], fold_case: bool
    ) -> tuple[str, list[Any]]:
        """:meth:`Table.match`, with the index a case-insensitive match needs."""
        if fold_case:
            self._db.execute(table.fold_index_sql(fields))
        return table.match(fields, keys, fold_case)

    def match(
        self,
        table: Table,
        names: Sequence[str],
        fields: tuple[str, ...],
        keys: Sequence[Sequence[Any]],
        fold_case: bool,
    ) -> list[Any]:
        """Rows (of ``names`` columns) whose ``fields`` equal any of ``keys``, in creation order."""
        if not keys:
            return []
        where, params = self.where(table, fields, keys, fold_case)
        return self.execute(table.select_sql(names, where, "ORDER BY _row"), params).fetchall()

    def lookup(
        self, table: Table, fields: tuple[str, ...], keys: Sequence[Sequence[Any]], fold_case: bool
    ) -> dict[tuple[Any, ...], list[Hit]]:
        """The rows having each key, by key (folded when ``fold_case``), in creation order."""
        names = ["_row", "marketoGUID", "externalOpportunityId", *fields]
        found: dict[tuple[Any, ...], list[Hit]] = {}
        for row in self.match(table, names, fields, keys, fold_case):
            key = table.key_of(row[3:], fields, fold_case, self.rare)
            found.setdefault(key, []).append((row[0], row[1], row[2]))
        return found

    def existing(self, name: str, values: Iterable[Any]) -> set[Any]:
        """Which of ``values`` a value table holds."""
        wanted = list(dict.fromkeys(values))
        if not wanted:
            return set()
        sql = f"SELECT id FROM {name} WHERE id IN ({', '.join('?' * len(wanted))})"  # noqa: S608
        found = {v for (v,) in self.execute(sql, wanted)}
        return {v for v in wanted if rare_in(v) in found or v in found} if self.rare else found

    def values(self, name: str) -> list[Any]:
        with self.lock:
            return [v for (v,) in self._db.execute(f"SELECT id FROM {name}")]  # noqa: S608

    def add_values(self, name: str, values: Iterable[Any]) -> None:
        with self.writing():
            self.execute_many(f"INSERT OR IGNORE INTO {name} VALUES (?)", [[v] for v in values])  # noqa: S608

    def insert(self, table: Table, records: Sequence[Record]) -> None:
        """New rows, after every existing one: creation order is row id order."""
        with self.writing():
            first = self._db.execute(f"SELECT coalesce(max(_row), 0) + 1 FROM {table.name}").fetchone()[0]  # noqa: S608
            indexes = table.indexes() if first == 1 and len(records) >= BULK_ROWS else {}
            for name in indexes:
                self._db.execute(f"DROP INDEX {name}")
            for sql, rows in table.inserts(records, first):
                self.execute_many(sql, rows)
            for sql in indexes.values():
                self._db.execute(sql)

    def all_rows(self, table: Table) -> list[Any]:
        with self.lock:
            return self._db.execute(table.select_sql(table.columns, "1", "ORDER BY _row")).fetchall()

    def count(self, name: str) -> int:
        with self.lock:
            return int(self._db.execute(f"SELECT count(*) FROM {name}").fetchone()[0])  # noqa: S608

    def delete_all(self, name: str) -> None:
        with self.writing():
            self._db.execute(f"DELETE FROM {name}")  # noqa: S608
