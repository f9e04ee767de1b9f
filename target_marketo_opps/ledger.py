"""The write ledger (`write_ledger_path`): records whose values Marketo already holds cost no call.

The rule. For each record key (per Marketo instance, i.e. base_url and client_id, and per
object), the ledger keeps a fingerprint of the last payload Marketo accepted for it: a hash of
the payload exactly as sent (after describe hygiene and value conversion), its exact key, the
action and the dedupe mode, with the marketoGUID Marketo answered. A sync whose fingerprint
matches is reported `unchanged` (with that marketoGUID) and not sent, but only when nothing
earlier in the same run may have touched that Marketo record: not the key's first occurrence
(any later one is sent, so A, B, A ends as A), a record whose marketoGUID was written or deleted
earlier in the run, a role of an opportunity deleted earlier in the run, a record keyed by
marketoGUID alone after a delete by dedupe fields. Keys are compared as a case-insensitive
Marketo would (case and outer spaces folded); the fingerprint holds the exact key, so `ABC` and
`abc` never match each other. Deletes are always sent.

What the writer keeps true: before any call that may change a record is sent, the record's
entries (by key and by marketoGUID; for an opportunity delete also its roles') are removed and
the removal committed to disk; an entry is written only from an answer that says created or
updated, with a marketoGUID, in a call whose answer was not lost, for a record with no lost
attempt in this run. So the ledger never claims values Marketo may not hold: a crash, a lost
answer, a skip or a failed call leave the entry absent. Losing or deleting the ledger file costs
calls (everything is sent once more), never data. The dry run reads the ledger with the same
rule and never writes it.

The caveat: the ledger only knows what this target wrote. A record someone else changed or
deleted in Marketo (a user, another integration, a CRM) still matches its fingerprint and is not
sent; set `write_ledger_refresh: true` now and then (say weekly) to send everything and store
fresh fingerprints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from marketo_api import MarketoObject, MarketoSettings

from .records import Item, Outcome, loose_value
from .terms import DELETE, SYNC, ConflictKey, KeyKind, Status

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE

UNCHANGED = Status.UNCHANGED
#: Bumped when the file's layout or the fingerprint changes; an older file is an error to delete.
LEDGER_VERSION = "1"
#: Lines Marketo accepted (a written entry needs one of these and a marketoGUID).
ACCEPTED = frozenset({Status.CREATED, Status.UPDATED})

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # scope: instance and object; key: "d:" + folded dedupe values (JSON) or "i:" + folded GUID;
    # guid as Marketo answered it; opportunity: folded externalOpportunityId (roles: theirs).
    "CREATE TABLE IF NOT EXISTS entries (scope TEXT NOT NULL, key TEXT NOT NULL, "
    "fingerprint BLOB NOT NULL, guid TEXT NOT NULL, opportunity TEXT, "
    "PRIMARY KEY (scope, key)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS entries_guid ON entries (scope, guid)",
    "CREATE INDEX IF NOT EXISTS entries_opportunity ON entries (scope, opportunity)",
)
_CHUNK = 300  # keys per statement (well under SQLite's variable limit)


class LedgerError(Exception):
    """The ledger file cannot be opened, read or written (names the path, never record data)."""


@dataclass(frozen=True)
class Entry:
    fingerprint: bytes
    guid: str


def instance_of(settings: MarketoSettings) -> str:
    """Which Marketo the entries describe: base_url without any user info, and the client id.

    Never the secret. Another client id on the same instance starts from an empty ledger: it
    costs calls once, and a ledger cannot tell two names for one instance apart anyway.
    """
    parts = urlsplit(settings.base_url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path} {settings.client_id}"


def entry_key(key: ConflictKey) -> str:
    """A conflict key as the ledger stores it: folded as a case-insensitive Marketo compares."""
    _, kind, value = key
    folded = loose_value(value)
    if kind == KeyKind.ID:
        return f"i:{folded}"
    return "d:" + json.dumps(folded, separators=(",", ":"), ensure_ascii=True, default=str)


def fingerprint(item: Item) -> bytes:
    """16 bytes identifying what was sent: action, dedupe mode, exact key and payload."""
    exact = item.conflict_keys[0][2] if item.conflict_keys else None
    text = json.dumps(
        [item.action, item.by, exact, item.payload],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.blake2b(text.encode("ascii"), digest_size=16).digest()


def _folded(value: str | None) -> str | None:
    return value.strip().casefold() if isinstance(value, str) and value.strip() else None


class Ledger:
    """The SQLite file; used from the main thread only (the writer's threads never touch it).

    WAL journal with full sync: a removal is on disk before the call it protects is sent, and a
    killed run leaves a consistent file. `read_only` (the dry run) never creates or changes it.
    """

    def __init__(self, path: str, instance: str, *, read_only: bool = False) -> None:
        self.path = path
        self.instance = instance
        self.read_only = read_only
        self._db: sqlite3.Connection | None = None
        self._opened = False

    # ---- opening ------------------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the file now, so a bad path stops the run before any call."""
        if self._opened:
            return
        try:
            self._db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise self._error("cannot be opened", exc) from exc
        self._opened = True

    def _connect(self) -> sqlite3.Connection | None:
        path = self.path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise LedgerError(
                f"write_ledger_path {path!r}: the directory {parent!r} does not exist (create it first)"
            )
        if self.read_only:
            if not os.path.exists(path):
                return None  # an empty ledger: nothing is unchanged, and the dry run creates nothing
            # Without a WAL file everything is in the main file: read it as immutable, which
            # creates no -wal/-shm files next to it either.
            flags = "mode=ro" if os.path.exists(f"{path}-wal") else "mode=ro&immutable=1"
            db = sqlite3.connect(f"file:{_uri_path(path)}?{flags}", uri=True, timeout=30)
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "entries" not in tables:
                db.close()
                return None
            self._check_version(db)
            return db
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (LEDGER_VERSION,))
            self._check_version(db)
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    def _check_version(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
        if row is None or row[0] != LEDGER_VERSION:
            raise LedgerError(
                f"write_ledger_path {self.path!r} was written by another version of this target "
                f"(ledger version {row[0] if row else 'unknown'}, expected {LEDGER_VERSION}); delete "
                "the file (that costs one full write, no data)"
            )

    def _error(self, what: str, exc: BaseException) -> LedgerError:
        if isinstance(exc, LedgerError):
            return exc
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return LedgerError(
            f"write_ledger_path {self.path!r} {what}: {detail}. Deleting the file loses no data: "
            "the next run sends every record once"
        )

    def _scope(self, obj: MarketoObject) -> str:
        return f"{self.instance} {obj.value}"

    # ---- reading ------------------------------------------------------------------------

    def lookup(self, obj: MarketoObject, key: ConflictKey) -> Entry | None:
        db = self._db
        if db is None:
            return None
        try:
            row = db.execute(
                "SELECT fingerprint, guid FROM entries WHERE scope = ? AND key = ?",
                (self._scope(obj), entry_key(key)),
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._error("cannot be read", exc) from exc
        return Entry(bytes(row[0]), str(row[1])) if row is not None else None

    # ---- writing (the real run) ---------------------------------------------------------

    def forget(self, obj: MarketoObject, items: Sequence[Item]) -> None:
        """Before these records are sent: remove every entry their call may make untrue; on disk.

        By key; by marketoGUID (keyed by it, or known from a removed entry); every entry keyed by
        marketoGUID alone when records go by dedupe fields (their GUIDs are not known before the
        answer); for an opportunity delete, its roles' entries (Marketo may cascade), and those of
        every role when the opportunity is not known.
        """
        db = self._db
        if db is None or not items:
            return
        scope = self._scope(obj)
        keys = {entry_key(k) for item in items for k in item.conflict_keys}
        guids = {
            str(v)
            for item in items
            for _, kind, v in item.conflict_keys
            if kind == KeyKind.ID and isinstance(v, str)
        }
        guids |= {g for g in (_folded(g) for g in guids) if g}
        try:
            db.execute("BEGIN IMMEDIATE")
            for chunk in _chunks(keys):
                marks = _marks(chunk)
                guids.update(
                    row[0]
                    for row in db.execute(
                        f"SELECT guid FROM entries WHERE scope = ? AND key IN ({marks})",  # noqa: S608
                        (scope, *chunk),
                    )
                )
                db.execute(f"DELETE FROM entries WHERE scope = ? AND key IN ({marks})", (scope, *chunk))  # noqa: S608
            if any(KeyKind.DEDUPE in item.key_kinds for item in items):
                db.execute("DELETE FROM entries WHERE scope = ? AND key >= 'i:' AND key < 'i;'", (scope,))
            if obj is OPP:
                self._forget_roles(db, [i for i in items if i.op == DELETE])
            for chunk in _chunks(guids):
                db.execute(
                    f"DELETE FROM entries WHERE scope = ? AND guid IN ({_marks(chunk)})",  # noqa: S608
                    (scope, *chunk),
                )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise self._error("cannot be written", exc) from exc

    def _forget_roles(self, db: sqlite3.Connection, deletes: Sequence[Item]) -> None:
        if not deletes:
            return
        roles = self._scope(ROLE)
        opportunities = {_folded(i.opportunity_id) for i in deletes if i.opportunity_id}
        for item in deletes:
            if item.opportunity_id:
                continue
            guid = next((str(v) for _, kind, v in item.conflict_keys if kind == KeyKind.ID), "")
            found = [
                row[0]
                for row in db.execute(
                    "SELECT opportunity FROM entries WHERE scope = ? AND guid IN (?, ?)",
                    (self._scope(OPP), guid, _folded(guid)),
                )
                if row[0]
            ]
            if not found:  # an opportunity this ledger does not know: any role may be its
                db.execute("DELETE FROM entries WHERE scope = ?", (roles,))
                return
            opportunities.update(found)
        db.execute("DELETE FROM entries WHERE scope = ? AND opportunity IS NULL", (roles,))
        for chunk in _chunks({o for o in opportunities if o}):
            db.execute(
                f"DELETE FROM entries WHERE scope = ? AND opportunity IN ({_marks(chunk)})",  # noqa: S608
                (roles, *chunk),
            )

    def remember(self, obj: MarketoObject, accepted: Iterable[tuple[Item, str]]) -> None:
        """Entries for records Marketo accepted (with the marketoGUID it answered).

        Committed per answered batch; losing them in a crash costs calls only.
        """
        db = self._db
        if db is None:
            return
        scope = self._scope(obj)
        rows = [
            (scope, entry_key(item.conflict_keys[0]), fingerprint(item), guid, _folded(item.opportunity_id))
            for item, guid in accepted
            if item.conflict_keys and item.op == SYNC
        ]
        if not rows:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise self._error("cannot be written", exc) from exc

    def _rollback(self) -> None:
        db = self._db
        if db is not None and db.in_transaction:
            # Failing that, closing the connection at the end of the run rolls back.
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def close(self) -> None:
        """Commit what is pending and close (idempotent)."""
        db, self._db = self._db, None
        if db is None:
            return
        try:
            if db.in_transaction:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error("cannot be written", exc) from exc
        finally:
            db.close()


class UnchangedRule:
    """Which records are `unchanged`, decided in input order: the one rule both runs use.

    It reads only entries that nothing earlier in this run may have changed (that is what the
    conditions below amount to), so the dry run, which never changes the file, decides as the
    real run does.
    """

    def __init__(self, ledger: Ledger, *, refresh: bool) -> None:
        self.ledger = ledger
        self.refresh = refresh
        # Hashes of the folded keys (and marketoGUIDs) of every record so far; a collision can
        # only make a record be sent.
        self._seen: set[int] = set()
        self._deleted_opportunities: set[int] = set()
        self._opportunity_deleted = False  # any opportunity delete so far
        self._unknown_opportunity_deleted = False  # one by marketoGUID alone
        self._deleted_by_dedupe: set[MarketoObject] = set()

    def check(self, item: Item) -> Outcome | None:
        """The `unchanged` outcome for a record that need not be sent, else None (send it).

        Call once per accepted, not rejected record, in input order.
        """
        keys = [hash(k) for k in item.loose_keys]
        verdict = None
        if not self.refresh and item.op == SYNC and keys and self._seen.isdisjoint(keys):
            entry = self.ledger.lookup(item.obj, item.conflict_keys[0])
            if entry is not None:
                guid_key = hash(ConflictKey.guid(item.obj, loose_value(entry.guid)))
                if self._may_match(item, guid_key) and entry.fingerprint == fingerprint(item):
                    verdict = Outcome(UNCHANGED, entry.guid)
                self._seen.add(guid_key)
        self._seen.update(keys)
        if item.op == DELETE:
            self._note_delete(item)
        return verdict

    def _may_match(self, item: Item, guid_key: int) -> bool:
        """Whether no earlier record of this run may have written this Marketo record."""
        if guid_key in self._seen:
            return False
        if KeyKind.DEDUPE not in item.key_kinds and item.obj in self._deleted_by_dedupe:
            return False  # deleted by its dedupe fields, maybe: the ledger cannot link the two
        if item.obj is ROLE:
            if self._unknown_opportunity_deleted:
                return False
            opportunity = _folded(item.opportunity_id)
            if opportunity is None:
                return not self._opportunity_deleted
            return hash(opportunity) not in self._deleted_opportunities
        return True

    def _note_delete(self, item: Item) -> None:
        if KeyKind.DEDUPE in item.key_kinds:
            self._deleted_by_dedupe.add(item.obj)
        if item.obj is OPP:
            self._opportunity_deleted = True
            opportunity = _folded(item.opportunity_id)
            if opportunity is None:
                self._unknown_opportunity_deleted = True
            else:
                self._deleted_opportunities.add(hash(opportunity))


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    batch = sorted(values)
    for start in range(0, len(batch), _CHUNK):
        yield batch[start : start + _CHUNK]


def _marks(chunk: Sequence[Any]) -> str:
    return ",".join("?" * len(chunk))


def _uri_path(path: str) -> str:
    return quote(os.path.abspath(path))
