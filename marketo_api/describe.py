"""What Marketo's describe endpoints say about an object, as typed values."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class MarketoObject(enum.Enum):
    """The two objects this project reads and writes; the value is the REST path below /v1."""

    OPPORTUNITY = "opportunities"
    OPPORTUNITY_ROLE = "opportunities/roles"

    @property
    def label(self) -> str:
        """Singular words for messages: "opportunity", "opportunity role"."""
        return _NAMES[self][0]

    @property
    def plural(self) -> str:
        """Plural words for messages: "opportunities", "opportunity roles"."""
        return _NAMES[self][1]

    @property
    def snake_name(self) -> str:
        """The singular name in data, e.g. a results row's `object`: "opportunity", "opportunity_role"."""
        return _NAMES[self][2]

    @property
    def stream_name(self) -> str:
        """The Singer stream of its records: "opportunities", "opportunity_roles"."""
        return _NAMES[self][3]

    @property
    def fields_stream_name(self) -> str:
        """The Singer stream of its field metadata: "opportunity_fields", "opportunity_role_fields"."""
        return _NAMES[self][4]

    @classmethod
    def from_stream_name(cls, name: str) -> MarketoObject | None:
        """The object whose records a stream of this name holds, or None."""
        return _BY_STREAM.get(name)


# The one table of names: label, plural, snake name, record stream, fields stream.
_NAMES: dict[MarketoObject, tuple[str, str, str, str, str]] = {
    MarketoObject.OPPORTUNITY: (
        "opportunity",
        "opportunities",
        "opportunity",
        "opportunities",
        "opportunity_fields",
    ),
    MarketoObject.OPPORTUNITY_ROLE: (
        "opportunity role",
        "opportunity roles",
        "opportunity_role",
        "opportunity_roles",
        "opportunity_role_fields",
    ),
}
_BY_STREAM = {obj.stream_name: obj for obj in MarketoObject}


@dataclass(frozen=True)
class FieldDescription:
    name: str
    display_name: str
    data_type: str
    length: int | None
    updateable: bool

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> FieldDescription:
        length = raw.get("length")
        return cls(
            name=str(raw["name"]),
            display_name=str(raw.get("displayName") or raw["name"]),
            data_type=str(raw.get("dataType") or "string"),
            length=int(length) if length is not None else None,
            updateable=bool(raw.get("updateable", False)),
        )


@dataclass(frozen=True)
class ObjectDescription:
    """One describe result: the fields, the key fields and what can be searched."""

    name: str
    display_name: str
    id_field: str
    dedupe_fields: tuple[str, ...]
    searchable_fields: tuple[tuple[str, ...], ...]
    fields: tuple[FieldDescription, ...]

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> ObjectDescription:
        return cls(
            name=str(raw.get("name", "")),
            display_name=str(raw.get("displayName") or raw.get("name", "")),
            id_field=str(raw.get("idField") or "marketoGUID"),
            dedupe_fields=tuple(raw.get("dedupeFields") or ()),
            searchable_fields=tuple(tuple(group) for group in raw.get("searchableFields") or ()),
            fields=tuple(FieldDescription.from_api(f) for f in raw.get("fields") or ()),
        )

    def field(self, name: str) -> FieldDescription:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def single_searchable_fields(self) -> frozenset[str]:
        """Fields usable alone as a query's filterType."""
        return frozenset(group[0] for group in self.searchable_fields if len(group) == 1)
