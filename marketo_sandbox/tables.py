"""How records map onto SQLite: one table per object type, one column per field.

Columns have no declared type, so SQLite keeps every value as Python gave it ("01872" stays a
string). Booleans come back from SQLite as 0/1. A field of an unknown ``dataType`` holds any JSON
scalar: its strings are kept as they are, anything else as a BLOB of JSON. Two kinds of value
SQLite cannot bind at all are *rare values*: strings with lone surrogates (JSON input may carry
them) become BLOBs of their ``surrogatepass`` bytes, and integers beyond 64 bits become their
digits as TEXT. Only a store that ever kept a rare value pays for looking for them when it reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

from .config import KNOWN_DATA_TYPES
from .schema import INTEGER_TYPES, ObjectSchema

#: The object types, which are also their tables' names.
OPPORTUNITIES = "opportunities"
ROLES = "roles"

Record = dict[str, Any]
Decoder = Callable[[Any], Any]

_INT64_MIN, _INT64_END = -(2**63), 2**63


def quote(name: str) -> str:
    """A field name as an SQL identifier (field names are letters, digits and underscores)."""
    return f'"{name}"'


def fold(value: Any) -> Any:
    """Case-insensitive matching, as one plausible Marketo collation would do it."""
    return value.casefold() if isinstance(value, str) else value


def sql_fold(value: Any) -> Any:
    """:func:`fold` for values as SQLite holds them (registered as the SQL function ``fold``)."""
    if value.__class__ is bytes:
        return rare_in(blob_out(value).casefold())
    return fold(value)


def rare_in(value: Any) -> Any:
    """A value SQLite can bind: see the module docstring. Other values are left alone."""
    if value.__class__ is str:
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass")
    elif value.__class__ is int and not _INT64_MIN <= value < _INT64_END:
        return str(value)
    return value


def blob_out(value: bytes) -> str:
    return value.decode("utf-8", "surrogatepass")


def _unknown_in(value: Any) -> Any:
    if value.__class__ is str and rare_in(value) is value:
        return value
    return json.dumps(value).encode()


def _unknown_out(value: Any) -> Any:
    return json.loads(value) if value.__class__ is bytes else value


_bool_out = (False, True).__getitem__


def _int_out(value: Any) -> Any:
    return int(value) if value.__class__ is str else value


def text_out(value: Any) -> Any:
    return blob_out(value) if value.__class__ is bytes else value


@lru_cache(maxsize=1024)
def match_sql(fields: tuple[str, ...], n: int, fold_case: bool) -> str:
    """A WHERE clause for rows whose ``fields`` equal any of ``n`` keys (the same for every call
    of that shape, so SQLite's statement cache keeps its plan)."""
    cols = [f"fold({quote(f)})" if fold_case else quote(f) for f in fields]
    if len(fields) == 1:
        return f"{cols[0]} IN ({', '.join('?' * n)})"
    term = "(" + " AND ".join(f"{c} = ?" for c in cols) + ")"
    return " OR ".join([term] * n) or "0"


@lru_cache(maxsize=1024)
def _insert_sql(table: str, names: tuple[str, ...]) -> str:
    columns = ", ".join(["_row", *map(quote, names)])
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * (len(names) + 1))})"  # noqa: S608


class Table:
    """The SQL of one object type; the :class:`~marketo_sandbox.store.Store` runs it."""

    def __init__(self, name: str, schema: ObjectSchema) -> None:
        self.name = name
        self.schema = schema
        self.columns = [f.name for f in schema.fields]
        self.column_set = frozenset(self.columns)
        unknown = [f.name for f in schema.fields if f.data_type not in KNOWN_DATA_TYPES]
        self._unknown = frozenset(unknown)
        self._decoders: dict[str, Decoder] = dict.fromkeys(unknown, _unknown_out)
        self._decoders.update({f.name: _bool_out for f in schema.fields if f.data_type == "boolean"})
        # With rare values about: integer columns may hold TEXT digits, any string a BLOB.
        self._rare_decoders: dict[str, Decoder] = dict.fromkeys(self.columns, text_out)
        self._rare_decoders.update({f.name: _int_out for f in schema.fields if f.data_type in INTEGER_TYPES})
        self._rare_decoders.update(self._decoders)

    def create_sql(self) -> str:
        return f"CREATE TABLE {self.name} (_row INTEGER PRIMARY KEY, {', '.join(map(quote, self.columns))})"

    def indexes(self) -> dict[str, str]:
        """An index (name -> CREATE statement) for every key a query or a write looks records up by."""
        keys: list[tuple[str, ...]] = [(self.schema.id_field,), tuple(self.schema.dedupe_fields)]
        keys += [tuple(s) for s in self.schema.searchable_fields]
        wanted: list[tuple[str, ...]] = []
        for key in sorted(set(keys), key=len, reverse=True):
            if not any(other[: len(key)] == key for other in wanted):  # a longer index serves it
                wanted.append(key)
        statements = {}
        for key in wanted:
            name = self.index_name(key)
            statements[name] = f"CREATE INDEX {name} ON {self.name} ({', '.join(map(quote, key))})"
        return statements

    def index_name(self, fields: Sequence[str], folded: bool = False) -> str:
        return f"{self.name}_{'fold_' if folded else ''}{'_'.join(fields)}"

    def fold_index_sql(self, fields: Sequence[str]) -> str:
        """Built on the first case-insensitive lookup: only that reading of Marketo pays for it."""
        terms = ", ".join(f"fold({quote(f)})" for f in fields)
        return f"CREATE INDEX IF NOT EXISTS {self.index_name(fields, True)} ON {self.name} ({terms})"

    def inserts(self, records: Sequence[Record], first_row: int) -> list[tuple[str, list[list[Any]]]]:
        """INSERT statements and their rows, one statement per set of non-null fields: binding a
        NULL costs Python's sqlite3 more than a value does. Explicit row ids keep creation order
        across the statements. A field the schema lacks is an error."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        for row, rec in enumerate(records, first_row):
            present: list[str] = []
            values: list[Any] = [row]
            for name, value in rec.items():
                if value is not None:
                    present.append(name)
                    values.append(value)
            groups.setdefault(tuple(present), []).append(values)
        out: list[tuple[str, list[list[Any]]]] = []
        for names, rows in groups.items():
            if not self.column_set.issuperset(names):
                raise ValueError(f"{self.name}: unknown fields {sorted(set(names) - self.column_set)}")
            out.append((_insert_sql(self.name, names), self.encoded(("_row", *names), rows)))
        return out

    def encoded(self, names: Sequence[str], rows: list[list[Any]]) -> list[list[Any]]:
        """``rows`` of ``names`` columns with the values of an unknown ``dataType`` encoded (in place)."""
        for i in [i for i, n in enumerate(names) if n in self._unknown]:
            for values in rows:
                if values[i] is not None:
                    values[i] = _unknown_in(values[i])
        return rows

    def update_sql(self, names: Sequence[str]) -> str:
        """An UPDATE of ``names`` by row id (the row id is the last parameter)."""
        assignments = ", ".join(f"{quote(n)} = ?" for n in names)
        return f"UPDATE {self.name} SET {assignments} WHERE _row = ?"  # noqa: S608

    def match(
        self, fields: tuple[str, ...], keys: Sequence[Sequence[Any]], fold_case: bool
    ) -> tuple[str, list[Any]]:
        """A WHERE clause and its parameters for rows whose ``fields`` equal any of ``keys``
        (key fields are searchable strings and integers, stored as given)."""
        if fold_case:
            params = [fold(v) for key in keys for v in key]
        elif len(fields) == 1:
            params = [key[0] for key in keys]
        else:
            params = [v for key in keys for v in key]
        return match_sql(fields, len(keys), fold_case), params

    def select_sql(self, names: Sequence[str], where: str, tail: str = "") -> str:
        return f"SELECT {', '.join(map(quote, names))} FROM {self.name} WHERE {where} {tail}"  # noqa: S608

    def records(
        self,
        names: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        numbered: bool = False,
        rare: bool = False,
    ) -> list[Record]:
        """Records from rows of ``names`` columns; NULL fields are left out, as Marketo does.
        ``numbered`` starts each with its ``seq``, the index within the page; ``rare``: the store
        has kept a rare value."""
        decoders = [(self._rare_decoders if rare else self._decoders).get(n) for n in names]
        out: list[Record] = []
        for seq, row in enumerate(rows):
            rec: Record = {"seq": seq} if numbered else {}
            for name, value, decode in zip(names, row, decoders, strict=True):
                if value is not None:
                    rec[name] = value if decode is None else decode(value)
            out.append(rec)
        return out

    def key_of(
        self, values: Sequence[Any], fields: Sequence[str], fold_case: bool, rare: bool
    ) -> tuple[Any, ...]:
        """A key read back from SQLite, comparable with the key a request gave."""
        if rare:
            values = [self._rare_decoders[f](v) for f, v in zip(fields, values, strict=True)]
        return tuple(map(fold, values)) if fold_case else tuple(values)
