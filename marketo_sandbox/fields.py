"""Field metadata: describe, and the opportunity ``schema/fields`` browse and lookup API."""

from __future__ import annotations

from typing import Any

from .params import ApiError, parse_batch_size
from .query import fingerprint, make_page_token, page_offset
from .schema import ObjectSchema

Payload = dict[str, Any]


def describe(schema: ObjectSchema, complete: bool) -> Payload:
    return {"success": True, "result": [schema.describe(complete=complete)]}


def schema_list(schema: ObjectSchema, params: dict[str, Any], complete: bool) -> Payload:
    """A page of field records; unlike queries, this API always says ``moreResult``."""
    size = parse_batch_size(params.get("batchSize"))
    records = schema.schema_records(complete)
    fp = fingerprint(["schema-fields", schema.api_name])
    offset = page_offset(params, fp)
    page = records[offset : offset + size]
    out: Payload = {"success": True, "result": page}
    end = offset + len(page)
    if end < len(records):
        out["nextPageToken"] = make_page_token(end, fp)
    out["moreResult"] = end < len(records)
    return out


def schema_field(schema: ObjectSchema, name: str, complete: bool) -> Payload:
    """One field by name, case-insensitively; unknown names (and role schema paths) are 610."""
    wanted = name.lower()
    for field_name in schema.schema_order or []:
        if field_name.lower() == wanted:
            return {"success": True, "result": [schema.by_name[field_name].schema_record(complete)]}
    raise ApiError("610", "Requested resource not found")
