"""Writes: sync (create/update) and delete of opportunities and roles, from a decoded JSON body."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .config import SandboxConfig
from .params import MAX_BATCH, ApiError
from .store import OPPORTUNITIES, SALES_PERSON_MESSAGE, Record

if TYPE_CHECKING:
    from .state import SandboxState

Payload = dict[str, Any]
#: Applies a batch to the store, given the record faults' ready-made results.
Apply = Callable[[dict[int, Record]], list[Record]]

KEY_MODES = ("dedupeFields", "idField")
ACTIONS = ("createOnly", "updateOnly", "createOrUpdate")


def records_input(data: dict[str, Any]) -> list[Any]:
    """The ``input`` array every write takes: 1002 without it, 1003 when it is no array or too long."""
    records = data.get("input")
    if records is None:
        raise ApiError("1002", "Missing value for required parameter 'input'")
    if not isinstance(records, list):
        raise ApiError("1003", "Invalid input: 'input' must be a JSON array")
    if len(records) > MAX_BATCH:
        raise ApiError("1003", f"Too many records in input: {len(records)} (max {MAX_BATCH})")
    return records


def sync(state: SandboxState, cfg: SandboxConfig, obj: str, data: dict[str, Any], endpoint: str) -> Payload:
    records = records_input(data)
    action = data.get("action") or "createOrUpdate"
    if action not in ACTIONS:
        raise ApiError("1003", f"Invalid action '{action}'")
    dedupe_by = data.get("dedupeBy") or "dedupeFields"
    if dedupe_by not in KEY_MODES:
        raise ApiError("1003", f"Invalid dedupeBy '{dedupe_by}'")
    if dedupe_by == "idField" and action != "updateOnly":
        raise ApiError("1003", "dedupeBy 'idField' is only valid with action 'updateOnly'")
    store = state.store
    check_sales_person = obj == OPPORTUNITIES and cfg.sales_person_check is not None
    if check_sales_person and cfg.sales_person_check == "response" and not cfg.crm_sync:
        unknown = store.unknown_sales_person(records)
        if unknown is not None:
            raise ApiError("718", SALES_PERSON_MESSAGE.format(id=unknown))
    return _apply(
        state,
        cfg,
        obj=obj,
        by=dedupe_by,
        records=records,
        endpoint=endpoint,
        apply=lambda skip: store.sync(
            obj,
            action,
            dedupe_by,
            records,
            cfg.crm_sync,
            skip=skip,
            missing_opportunity_code=cfg.missing_opportunity_code,
            check_sales_person=check_sales_person and cfg.sales_person_check == "record",
            fold=not cfg.filter_case_sensitive,
        ),
    )


def delete(state: SandboxState, cfg: SandboxConfig, obj: str, data: dict[str, Any], endpoint: str) -> Payload:
    records = records_input(data)
    delete_by = data.get("deleteBy") or "dedupeFields"
    if delete_by not in KEY_MODES:
        raise ApiError("1003", f"Invalid deleteBy '{delete_by}'")
    return _apply(
        state,
        cfg,
        obj=obj,
        by=delete_by,
        records=records,
        endpoint=endpoint,
        apply=lambda skip: state.store.delete(
            obj, delete_by, records, cfg.crm_sync, skip=skip, fold=not cfg.filter_case_sensitive
        ),
    )


def _apply(
    state: SandboxState,
    cfg: SandboxConfig,
    *,
    obj: str,
    by: str,
    records: list[Any],
    endpoint: str,
    apply: Apply,
) -> Payload:
    """Record faults first (decided once the request is valid), then the store, then the counts."""
    skip: dict[int, Record] = {}
    if not cfg.crm_sync:  # in CRM sync mode 1018 wins and no record fault is used up
        schema = state.store.schema(obj)
        key_fields = (schema.id_field,) if by == "idField" else tuple(schema.dedupe_fields)
        skip = state.pick_record_faults(cfg, obj, key_fields, records)
    state.count_write_batch(endpoint, len(records))
    results = apply(skip)
    state.count_record_errors(results)
    return {"success": True, "result": results}
