"""Request bodies exactly as they are sent, and Marketo's batch size."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

MAX_BATCH = 300  # records per sync/delete, values per filter, rows per page


def one_shot_encoder(
    *, ensure_ascii: bool, separators: tuple[str, str], default: Callable[[Any], Any]
) -> Callable[[Any], str]:
    """`json.dumps` with these options, without building an encoder per call.

    `json.dumps` makes a new C encoder on every call, which the per-record paths (payload sizes,
    results lines) pay for every record. No cycle check: the values come from JSON input.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the pure-Python encoder, built once
        return json.JSONEncoder(ensure_ascii=ensure_ascii, separators=separators, default=default).encode
    item_separator, key_separator = separators
    escape = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    # Arguments as `JSONEncoder.iterencode` passes them: markers, default, encoder, indent,
    # key_separator, item_separator, sort_keys, skipkeys, allow_nan.
    encode = make(None, default, escape, None, key_separator, item_separator, False, False, True)
    return lambda value: "".join(encode(value, 0))


def encode_json(value: Any) -> bytes:
    """The exact bytes a JSON body is sent as (callers use it to keep batches under 1 MB)."""
    return _encode_body(value).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} to Marketo")


_encode_body = one_shot_encoder(ensure_ascii=True, separators=(",", ":"), default=_json_default)


def chunked(items: Iterable[Any], size: int = MAX_BATCH) -> Iterator[list[Any]]:
    """Consecutive lists of at most `size` items, without holding more than one list."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
