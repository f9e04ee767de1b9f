"""Request parameters as Marketo reads them, and the response-level error every endpoint raises."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

MAX_BATCH = 300
#: Query parameters the spec declares ``collectionFormat: multi``: repeated means comma-joined.
MULTI_PARAMS = ("filterValues", "fields")


class ApiError(Exception):
    """A response-level Marketo error (HTTP 200, success:false)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def type_mismatch(value: Any, name: str, data_type: str) -> ApiError:
    """1001, Marketo's "Invalid value '%s'. Required of type '%s'", naming the parameter too."""
    return ApiError("1001", f"Invalid value '{value}' for '{name}'. Required of type '{data_type}'")


def parse_batch_size(value: Any) -> int:
    if value is None or value == "":
        return MAX_BATCH
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise type_mismatch(value, "batchSize", "integer")
    try:
        size = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise type_mismatch(value, "batchSize", "integer") from exc
    if not 1 <= size <= MAX_BATCH:
        raise ApiError("1003", f"Invalid batchSize '{value}': must be between 1 and {MAX_BATCH}")
    return size


def split_list(value: Any, what: str, *, trim: bool = True) -> list[str]:
    """A comma-separated string or a JSON array, each value without surrounding whitespace only
    when ``trim``; blank values are dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = []
        for v in value:
            if isinstance(v, dict | list) or v is None:
                raise ApiError("1003", f"Invalid {what}")
            items.append(v if isinstance(v, str) else json.dumps(v))
    else:
        items = [json.dumps(value)]
    return [i.strip() if trim else i for i in items if i.strip()]


def required(params: dict[str, Any], name: str) -> Any:
    """A required parameter: 1002 when it is absent, 701 when it is blank."""
    if name not in params or params[name] is None:
        raise ApiError("1002", f"Missing value for required parameter '{name}'")
    value = params[name]
    if isinstance(value, str) and not value.strip():
        raise ApiError("701", f"{name} cannot be blank")
    return value


def flatten(parsed: dict[str, list[str]]) -> dict[str, Any]:
    """One value per parameter; a repeated ``filterValues`` or ``fields`` (``collectionFormat:
    multi``) is joined with commas, so ``a&a`` and ``a,a`` mean the same. Other repeats: the first."""
    return {k: ",".join(v) if k in MULTI_PARAMS else v[0] for k, v in parsed.items() if k != "_method"}


def loose_form(body: bytes) -> dict[str, list[str]]:
    """A form body read the forgiving way (bad UTF-8 replaced), for Identity and token lookups."""
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def json_object(body: bytes) -> dict[str, Any]:
    """A JSON request body, which Marketo only takes as an object (609 otherwise)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError("609", "Invalid JSON") from exc
    if not isinstance(data, dict):
        raise ApiError("609", "Invalid JSON: the request body must be a JSON object")
    return data


def request_params(
    query: dict[str, list[str]], body: bytes, content_type: str, is_query_post: bool
) -> dict[str, Any]:
    """Query-string and body parameters (the body wins); see :func:`flatten` for repeats."""
    params = flatten(query)
    if is_query_post and body:
        if content_type == "application/x-www-form-urlencoded":
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ApiError("609", "Invalid request body encoding") from exc
            params.update(flatten(parse_qs(text, keep_blank_values=True)))
        elif content_type == "application/json":
            data = json_object(body)
            # The spec: "filterType ... Default is dedupeFields" in a JSON lookup body.
            if "filterType" not in data and "filterType" not in params:
                data["filterType"] = "dedupeFields"
            params.update(data)
        else:
            raise ApiError("612", "Invalid Content Type")
    return params
