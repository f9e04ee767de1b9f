"""Opportunity and role queries (GET, or POST ``?_method=GET``) and their paging tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from typing import Any

from .config import QUERY_FIELDS_ADDED, SandboxConfig
from .params import MAX_BATCH, ApiError, parse_batch_size, required, split_list, type_mismatch
from .schema import INTEGER_TYPES, FieldDef, ObjectSchema, filter_key
from .store import Store

Payload = dict[str, Any]


# ---------------------------------------------------------------------- paging tokens
def fingerprint(parts: Any) -> bytes:
    """What a token is bound to, so a token reused with other parameters is refused."""
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).digest()[:8]


def make_page_token(offset: int, fingerprint: bytes) -> str:
    """Opaque token: base32 of (offset, fingerprint), shaped like Marketo's own tokens."""
    return base64.b32encode(struct.pack(">Q", offset) + fingerprint).decode()


def read_page_token(token: Any, fingerprint: bytes) -> int:
    if not isinstance(token, str) or not token.strip():
        raise ApiError("1003", "Invalid nextPageToken")
    text = token.strip().upper()
    text += "=" * (-len(text) % 8)
    try:
        raw = base64.b32decode(text)
    except ValueError as exc:
        raise ApiError("1003", "Invalid nextPageToken") from exc
    if len(raw) != 16 or not hmac.compare_digest(raw[8:], fingerprint):
        raise ApiError("1003", "Invalid nextPageToken")
    return int(struct.unpack(">Q", raw[:8])[0])


def page_offset(params: dict[str, Any], fp: bytes) -> int:
    token = params.get("nextPageToken")
    return read_page_token(token, fp) if token not in (None, "") else 0


# ---------------------------------------------------------------------- the query
def query(store: Store, cfg: SandboxConfig, obj: str, params: dict[str, Any]) -> Payload:
    """One page of the records matching ``filterType``/``filterValues`` (or ``input``)."""
    schema = store.schema(obj)
    filter_type = required(params, "filterType")
    if not isinstance(filter_type, str):
        raise type_mismatch(json.dumps(filter_type), "filterType", "string")
    lowered = filter_type.strip().lower()
    if lowered == "idfield":
        filter_fields: tuple[str, ...] = (schema.id_field,)
    elif lowered == "dedupefields":
        filter_fields = tuple(schema.dedupe_fields)
    else:
        fdef = schema.resolve(filter_type)
        if fdef is None or fdef.name not in schema.single_searchable:
            raise ApiError("1011", f"Field not supported: invalid filterType '{filter_type}'")
        filter_fields = (fdef.name,)
    fdefs = [schema.by_name[n] for n in filter_fields]
    keys = _query_keys(cfg, filter_type, fdefs, params)
    out_fields = _out_fields(schema, split_list(params.get("fields"), "fields"), cfg.query_fields_added)
    size = parse_batch_size(params.get("batchSize"))

    fold = not cfg.filter_case_sensitive
    fp = fingerprint([obj, list(filter_fields), [list(k) for k in keys], out_fields, fold])
    offset = page_offset(params, fp)
    page, more = store.query(
        obj,
        filter_fields=filter_fields,
        keys=keys,
        out_fields=out_fields,
        offset=offset,
        limit=size,
        fold=fold,
    )
    out: Payload = {"success": True, "result": page}
    more = more or (cfg.trailing_empty_page and bool(page))
    if more:
        out["nextPageToken"] = make_page_token(offset + len(page), fp)
    if cfg.emit_more_result:
        out["moreResult"] = more
    return out


def _out_fields(schema: ObjectSchema, requested: list[str], mode: str) -> list[str]:
    """The requested fields plus what ``query_fields_added`` adds: the spec's required
    ``marketoGUID`` at least, and optionally the dedupe fields and the timestamps."""
    out_fields: list[str] = []
    for name in requested:
        fdef = schema.resolve(name)
        if fdef is None:
            raise ApiError("1006", f"Field '{name}' not found")
        if fdef.name not in out_fields:
            out_fields.append(fdef.name)
    if not out_fields:
        return list(schema.default_fields)
    added: list[str] = []
    for part in QUERY_FIELDS_ADDED[mode]:
        if part == "idField":
            added.append(schema.id_field)
        elif part == "dedupeFields":
            added.extend(schema.dedupe_fields)
        else:
            added.append(part)
    return out_fields + [n for n in added if n not in out_fields]


def _filter_key(fdef: FieldDef, raw: Any) -> Any:
    """A filter value as an index key; a value of the wrong type for an integer field is 1001."""
    key = filter_key(fdef, raw)
    if key is None and fdef.data_type in INTEGER_TYPES:
        shown = raw if isinstance(raw, str) else json.dumps(raw)
        raise type_mismatch(shown, fdef.name, fdef.data_type)
    return key


def _query_keys(
    cfg: SandboxConfig, filter_type: str, fdefs: list[FieldDef], params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """The filter keys, from the JSON ``input`` form or from ``filterValues``."""
    keys: list[tuple[Any, ...]] = []
    raw_input = params.get("input")
    if raw_input is not None:
        if not isinstance(raw_input, list):
            raise ApiError("1003", "Invalid input: 'input' must be a non-empty JSON array")
        if not raw_input:
            raise ApiError("701", "input cannot be blank")
        if len(raw_input) > MAX_BATCH:
            raise ApiError("1003", f"Too many records in input: {len(raw_input)} (max {MAX_BATCH})")
        for item in raw_input:
            if not isinstance(item, dict):
                raise ApiError("1003", "Invalid input: each input record must be a JSON object")
            lowered_item = {str(k).lower(): v for k, v in item.items()}
            key = []
            for fdef in fdefs:
                raw = lowered_item.get(fdef.name.lower())
                if raw is None or raw == "":
                    raise ApiError("1003", f"Value for required field '{fdef.name}' not specified in input")
                key.append(_filter_key(fdef, raw))
            keys.append(tuple(key))
        return keys
    if len(fdefs) > 1:
        raise ApiError(
            "1003",
            f"Invalid filterType '{filter_type}': the compound key needs the JSON 'input' form "
            "(POST ?_method=GET with Content-Type application/json)",
        )
    values = split_list(required(params, "filterValues"), "filterValues", trim=cfg.filter_values_trimmed)
    if not values:
        raise ApiError("701", "filterValues cannot be blank")
    if len(values) > MAX_BATCH:
        raise ApiError("1003", f"Too many filterValues: {len(values)} (max {MAX_BATCH})")
    return [(_filter_key(fdefs[0], v),) for v in values]
