"""The one way this project talks to Marketo: typed calls over one retry loop (`transport`).

Everything here is free of Singer concepts so the tap, the target and the tests make the same
calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from .answers import ClientStats, Reason, RecordResult
from .describe import MarketoObject, ObjectDescription
from .encoding import MAX_BATCH, chunked, encode_json, one_shot_encoder
from .errors import MarketoError
from .transport import MAX_BODY_BYTES, URI_SWITCH_BYTES, Request, Transport

__all__ = [
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "ClientStats",
    "MarketoClient",
    "Reason",
    "RecordResult",
    "chunked",
    "encode_json",
    "one_shot_encoder",
]


class MarketoClient(Transport):
    """Typed calls for Opportunities and Opportunity Roles, safe to share between threads."""

    def __repr__(self) -> str:
        return f"MarketoClient(base_url={self.settings.base_url!r})"

    def __enter__(self) -> MarketoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- typed calls -------------------------------------------------------------------

    def describe(self, obj: MarketoObject) -> ObjectDescription:
        body = self._call(Request("GET", f"/v1/{obj.value}/describe.json", label=f"describe {obj.value}"))
        results = body.get("result") or []
        if not results:
            raise MarketoError(f"describe of {obj.label} returned no result")
        return ObjectDescription.from_api(results[0])

    def query(
        self,
        obj: MarketoObject,
        filter_type: str,
        filter_values: Sequence[str | int],
        *,
        fields: Sequence[str] | None = None,
        batch_size: int = MAX_BATCH,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of records whose `filter_type` field equals one of `filter_values` (≤ 300).

        A URI that would pass 8 KB goes as POST `?_method=GET` with a form body.
        """
        values = [_filter_value(v) for v in filter_values]
        if not values:
            return iter(())
        if len(values) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} filter values per query, got {len(values)}")
        params = {"filterType": filter_type, "filterValues": ",".join(values)}
        if fields:
            params["fields"] = ",".join(fields)
        if batch_size != MAX_BATCH:
            params["batchSize"] = str(_check_batch_size(batch_size))
        path = f"/v1/{obj.value}.json"
        label = f"query {obj.value}"

        def page(token: str | None) -> Request:
            page_params = {**params, "nextPageToken": token} if token else params
            uri_bytes = len(self.settings.rest_url) + len(path) + 1 + len(urlencode(page_params))
            if uri_bytes > URI_SWITCH_BYTES:
                return Request("POST", path, params={"_method": "GET"}, form=page_params, label=label)
            return Request("GET", path, params=page_params, label=label)

        return self._pages(page)

    def query_by_compound_key(
        self,
        obj: MarketoObject,
        keys: Sequence[Mapping[str, Any]],
        *,
        fields: Sequence[str] | None = None,
        batch_size: int = MAX_BATCH,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of records matching whole dedupe keys (roles: externalOpportunityId, leadId, role).

        Sent as POST `?_method=GET` with a JSON `input`; every page re-sends the same input.
        """
        if not keys:
            return iter(())
        if len(keys) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} keys per query, got {len(keys)}")
        body: dict[str, Any] = {"filterType": "dedupeFields", "input": [dict(k) for k in keys]}
        if fields:
            body["fields"] = list(fields)
        if batch_size != MAX_BATCH:
            body["batchSize"] = _check_batch_size(batch_size)
        path = f"/v1/{obj.value}.json"

        def page(token: str | None) -> Request:
            page_body = {**body, "nextPageToken": token} if token else body
            return Request(
                "POST", path, params={"_method": "GET"}, json_body=page_body, label=f"query {obj.value}"
            )

        return self._pages(page)

    def lookup(
        self,
        obj: MarketoObject,
        keys: Sequence[Mapping[str, Any]],
        *,
        fields: Sequence[str] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of records matching up to 300 dedupe keys (one field, or the roles' compound key).

        One-field keys go as a plain filter; compound keys, and values a comma-separated
        filterValues cannot carry exactly (a comma, or whitespace at either end, which Marketo
        may trim), go as the JSON `input` form.
        """
        names = {tuple(key) for key in keys}
        if len(names) == 1:
            (only,) = names
            if len(only) == 1 and all(_plain_filter_value(key[only[0]]) for key in keys):
                return self.query(obj, only[0], [key[only[0]] for key in keys], fields=fields)
        return self.query_by_compound_key(obj, keys, fields=fields)

    def sync(
        self,
        obj: MarketoObject,
        records: Sequence[Mapping[str, Any]],
        *,
        action: str = "createOrUpdate",
        dedupe_by: str = "dedupeFields",
    ) -> list[RecordResult]:
        """Create and/or update up to 300 records; one result per record, in input order."""
        _check_write_batch(records)
        if dedupe_by == "idField" and action != "updateOnly":
            raise ValueError("dedupeBy=idField is only valid with action=updateOnly")
        body = {"action": action, "dedupeBy": dedupe_by, "input": [dict(r) for r in records]}
        return self._write(
            Request(
                "POST", f"/v1/{obj.value}.json", json_body=body, is_write=True, label=f"sync {obj.value}"
            ),
            len(records),
        )

    def delete(
        self,
        obj: MarketoObject,
        keys: Sequence[Mapping[str, Any]],
        *,
        delete_by: str = "dedupeFields",
    ) -> list[RecordResult]:
        """Delete up to 300 records by dedupe fields or by marketoGUID (`delete_by="idField"`)."""
        _check_write_batch(keys)
        body = {"deleteBy": delete_by, "input": [dict(k) for k in keys]}
        return self._write(
            Request(
                "POST",
                f"/v1/{obj.value}/delete.json",
                json_body=body,
                is_write=True,
                label=f"delete {obj.value}",
            ),
            len(keys),
        )

    def opportunity_fields(self, *, batch_size: int = MAX_BATCH) -> Iterator[list[dict[str, Any]]]:
        """Pages of field metadata from /opportunities/schema/fields.json."""
        path = "/v1/opportunities/schema/fields.json"
        size = _check_batch_size(batch_size)

        def page(token: str | None) -> Request:
            params = {"batchSize": str(size)}
            if token:
                params["nextPageToken"] = token
            return Request("GET", path, params=params, label="opportunity fields")

        return self._pages(page)

    def opportunity_field(self, name: str) -> dict[str, Any]:
        if not name or "/" in name:
            raise ValueError(f"invalid field name {name!r}")
        body = self._call(
            Request("GET", f"/v1/opportunities/schema/fields/{name}.json", label="opportunity field")
        )
        results = body.get("result") or []
        if not results:
            raise MarketoError(f"opportunity field {name!r} not found")
        return dict(results[0])

    # ---- plumbing ----------------------------------------------------------------------

    def _pages(self, build: Callable[[str | None], Request]) -> Iterator[list[dict[str, Any]]]:
        """Follow nextPageToken, re-sending the original filter, one page in memory at a time.

        Stops on a missing token or an empty page; `moreResult` is not relied on because
        Marketo omits it on some endpoints. Yields one list per call made, the last possibly
        empty (a token on the last full page costs one more call), so callers count calls exactly.
        """
        token: str | None = None
        seen: set[str] = set()
        while True:
            body = self._call(build(token))
            records = body.get("result") or []
            yield records
            token = body.get("nextPageToken") or None
            if not records or token is None:
                return
            if token in seen:
                raise MarketoError("Marketo returned the same nextPageToken twice; stopping to avoid a loop")
            seen.add(token)

    def _write(self, request: Request, count: int) -> list[RecordResult]:
        uncertain: list[bool] = []
        body = self._call(request, on_uncertain=lambda: uncertain.append(True))
        raw_results = body.get("result") or []
        results = [RecordResult.from_api(r, after_uncertain_attempt=bool(uncertain)) for r in raw_results]
        if len(results) != count or sorted(r.seq for r in results) != list(range(count)):
            raise MarketoError(
                f"Marketo answered {len(results)} results for {count} records; cannot match them by seq",
                request_id=body.get("requestId"),
                endpoint=request.path,
            )
        results.sort(key=lambda r: r.seq)
        return results


def _plain_filter_value(value: Any) -> bool:
    """Whether a comma-separated filterValues carries the value exactly, whatever Marketo trims."""
    text = str(value)
    return "," not in text and text == text.strip()


def _filter_value(value: str | int) -> str:
    text = str(value)
    if "," in text:
        raise ValueError(f"filter value {text!r} contains a comma, which Marketo's filterValues cannot carry")
    if not text:
        raise ValueError("empty filter value")
    return text


def _check_batch_size(batch_size: int) -> int:
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
    return batch_size


def _check_write_batch(records: Sequence[Any]) -> None:
    if not records:
        raise ValueError("nothing to send")
    if len(records) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} records per call, got {len(records)}")
