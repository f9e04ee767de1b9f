"""The set of opportunities already fetched in this run, kept on disk so memory stays flat.

A lead source can reach millions of opportunities; a Python set of a million 20-character ids
costs over 100 MB, so the ids live in a SQLite table in a temporary file instead (measured:
RSS stays within a few MB of the start for 2 million ids; see tests/tap/test_units.py).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 500  # ids per SELECT (under SQLite's default limit of 999 variables)


class SeenSet:
    """Insert-and-test for string ids. Used from one thread only (the batch coordinator)."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="tap-marketo-opps-")
        self._conn = sqlite3.connect(Path(self._dir.name) / "seen.sqlite3", isolation_level=None)
        # Scratch data: nothing has to survive a crash, so skip the journal and fsyncs.
        self._conn.execute("PRAGMA journal_mode=OFF")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute("PRAGMA cache_size=-4096")  # 4 MB page cache
        self._conn.execute("CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID")
        self._count = 0

    def add_new(self, ids: Iterable[str]) -> list[str]:
        """Mark `ids` as seen; return those not seen before, in first-occurrence order.

        One statement per 500 ids, not one per id: one statement per record was the tap's largest
        single cost. (`RETURNING` needs SQLite 3.35, 2021; Python 3.10+ builds ship newer.)
        """
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        cursor = self._conn.cursor()
        added: set[str] = set()
        cursor.execute("BEGIN")
        try:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                # RETURNING names the rows actually inserted: the ids not seen before.
                values = ",".join(["(?)"] * len(chunk))
                query = f"INSERT OR IGNORE INTO seen (id) VALUES {values} RETURNING id"  # noqa: S608
                added.update(row[0] for row in cursor.execute(query, chunk))
        finally:
            cursor.execute("COMMIT")
        new = [value for value in wanted if value in added]
        self._count += len(new)
        return new

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._conn.close()
        self._dir.cleanup()

    def __enter__(self) -> SeenSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunSeen:
    """The seen-sets of one run; a resumed run starts with empty ones.

    - `opportunities`: externalOpportunityIds whose opportunity was fetched (and emitted, when
      the stream is selected);
    - `roles_of`: externalOpportunityIds whose roles were *all* fetched, by an opportunity
      source (a lead source fetches only that lead's roles of an opportunity);
    - `roles`: marketoGUIDs of the roles emitted.
    """

    def __init__(self) -> None:
        self.opportunities = SeenSet()
        self.roles_of = SeenSet()
        self.roles = SeenSet()

    def close(self) -> None:
        for seen in (self.opportunities, self.roles_of, self.roles):
            seen.close()

    def __enter__(self) -> RunSeen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
