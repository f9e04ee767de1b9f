"""The one way this project talks to Marketo: typed calls over one retry loop.

Everything here is free of Singer concepts so the tap, the target and the tests make the same
calls. Bodies are parsed with exact decimals; every body is checked for `success:false`.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import backoff
import requests
import urllib3

from .auth import TokenProvider
from .describe import MarketoObject, ObjectDescription
from .errors import (
    Handling,
    MarketoConnectionError,
    MarketoError,
    MarketoRedirectError,
    RetriesExhaustedError,
    TransientError,
    error_for,
    handling_for,
)
from .limiter import CallLimiter, shared_limiter
from .network import ALWAYS_FATAL, FATAL_BEFORE_FIRST_ANSWER, Failure, cause_of, origin, redirect_target
from .settings import MarketoSettings

logger = logging.getLogger("marketo_api")

MAX_BATCH = 300  # records per sync/delete, values per filter, rows per page
MAX_URI_BYTES = 8 * 1024
# Leave room below Marketo's 8 KB for the host part and proxies that count differently.
URI_SWITCH_BYTES = MAX_URI_BYTES - 512
MAX_BODY_BYTES = 1024 * 1024
RETRY_FEW_LIMIT = 3
REAUTH_LIMIT = 3
CONNECT_TIMEOUT = 10.0
# Answers that mean Marketo did not run the call, so a write sent again cannot be a repeat.
NOT_EXECUTED_CODES = frozenset({"606", "615", "608", "614"})


@dataclass(frozen=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True)
class RecordResult:
    """Marketo's answer for one input record of a sync or delete, matched by `seq`."""

    seq: int
    status: str  # created | updated | deleted | skipped
    marketo_guid: str | None = None
    reasons: tuple[Reason, ...] = ()
    # The same batch was sent before and Marketo may have applied it (timeout, 604, dropped
    # connection); e.g. a createOnly "already exists" may then be our own earlier write.
    after_uncertain_attempt: bool = False

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], *, after_uncertain_attempt: bool) -> RecordResult:
        return cls(
            seq=int(raw["seq"]),
            status=str(raw.get("status", "skipped")),
            marketo_guid=raw.get("marketoGUID"),
            reasons=tuple(
                Reason(code=str(r.get("code", "")), message=str(r.get("message", "")))
                for r in raw.get("reasons") or ()
            ),
            after_uncertain_attempt=after_uncertain_attempt,
        )


@dataclass
class ClientStats:
    """Counters a caller can read and log. Updated under a lock; read them as a snapshot."""

    calls: int = 0
    calls_by_endpoint: collections.Counter[str] = field(default_factory=collections.Counter)
    retries_by_code: collections.Counter[str] = field(default_factory=collections.Counter)
    reauthentications: int = 0
    limiter_wait_seconds: float = 0.0
    retry_wait_seconds: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "calls_by_endpoint": dict(self.calls_by_endpoint),
            "retries_by_code": dict(self.retries_by_code),
            "reauthentications": self.reauthentications,
            "limiter_wait_seconds": round(self.limiter_wait_seconds, 3),
            "retry_wait_seconds": round(self.retry_wait_seconds, 3),
        }


@dataclass(frozen=True)
class _Request:
    method: str
    path: str  # below /rest, e.g. /v1/opportunities.json
    params: Mapping[str, str] | None = None
    form: Mapping[str, str] | None = None
    json_body: Any = None
    is_write: bool = False
    label: str = ""  # endpoint name for stats, e.g. "query opportunities"


class MarketoClient:
    """Typed calls for Opportunities and Opportunity Roles, safe to share between threads."""

    def __init__(
        self,
        settings: MarketoSettings,
        *,
        limiter: CallLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._local = threading.local()
        self._auth_session = _new_session()
        self._sleep = sleep
        self._limiter = limiter or shared_limiter(
            settings.base_url,
            max_calls=settings.max_calls_per_20s,
            window_seconds=settings.rate_window_seconds,
            max_concurrent=settings.max_concurrent_requests,
            daily_budget=settings.daily_call_budget,
        )
        self._auth = TokenProvider(
            token_url=settings.token_url,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            session=self._auth_session,
        )
        self._stats_lock = threading.Lock()
        self.stats = ClientStats()
        self._sessions: list[requests.Session] = []
        self._answered = False

    def __repr__(self) -> str:
        return f"MarketoClient(base_url={self.settings.base_url!r})"

    def __enter__(self) -> MarketoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for session in self._sessions:
            session.close()
        self._sessions.clear()
        self._auth_session.close()

    # ---- typed calls -------------------------------------------------------------------

    def describe(self, obj: MarketoObject) -> ObjectDescription:
        body = self._call(_Request("GET", f"/v1/{obj.value}/describe.json", label=f"describe {obj.value}"))
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

        def page(token: str | None) -> _Request:
            page_params = {**params, "nextPageToken": token} if token else params
            uri_bytes = len(self.settings.rest_url) + len(path) + 1 + len(urlencode(page_params))
            if uri_bytes > URI_SWITCH_BYTES:
                return _Request("POST", path, params={"_method": "GET"}, form=page_params, label=label)
            return _Request("GET", path, params=page_params, label=label)

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

        def page(token: str | None) -> _Request:
            page_body = {**body, "nextPageToken": token} if token else body
            return _Request(
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
            _Request(
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
            _Request(
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

        def page(token: str | None) -> _Request:
            params = {"batchSize": str(size)}
            if token:
                params["nextPageToken"] = token
            return _Request("GET", path, params=params, label="opportunity fields")

        return self._pages(page)

    def opportunity_field(self, name: str) -> dict[str, Any]:
        if not name or "/" in name:
            raise ValueError(f"invalid field name {name!r}")
        body = self._call(
            _Request("GET", f"/v1/opportunities/schema/fields/{name}.json", label="opportunity field")
        )
        results = body.get("result") or []
        if not results:
            raise MarketoError(f"opportunity field {name!r} not found")
        return dict(results[0])

    # ---- plumbing ----------------------------------------------------------------------

    def _pages(self, build: Callable[[str | None], _Request]) -> Iterator[list[dict[str, Any]]]:
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

    def _write(self, request: _Request, count: int) -> list[RecordResult]:
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

    def _session(self) -> requests.Session:
        """One session (connection pool) per thread: requests.Session is not thread-safe."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _new_session()
            self._local.session = session
            self._sessions.append(session)
        return session

    def _call(self, request: _Request, on_uncertain: Callable[[], None] | None = None) -> dict[str, Any]:
        """Send one call through the limiter; retry, re-authenticate or fail by Marketo's code."""
        started = time.monotonic()
        waited = 0.0  # counted apart from the clock, so an injected sleep still meets the bound
        waits = backoff.expo(base=2, factor=1, max_value=30)
        next(waits)  # backoff's generators yield None first
        few_retries: collections.Counter[str] = collections.Counter()
        reauths = 0
        timeout = (
            CONNECT_TIMEOUT,
            self.settings.write_timeout_seconds if request.is_write else self.settings.query_timeout_seconds,
        )
        url = f"{self.settings.rest_url}{request.path}"
        data = self._encode_body(request)
        content_type = {}
        if request.json_body is not None:
            content_type = {"Content-Type": "application/json"}
        elif request.form is not None:
            content_type = {"Content-Type": "application/x-www-form-urlencoded"}
        token = ""
        while True:
            try:
                token = self._auth.token()
                headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip", **content_type}
                body = self._send(request, url, headers, data, timeout)
            except TransientError as exc:
                unreachable = self._unreachable(exc)
                if unreachable is not None:
                    raise unreachable from None
                code = exc.code or "network"
                if request.is_write and on_uncertain is not None and exc.may_have_run:
                    on_uncertain()
                handling = handling_for(code) if exc.code else Handling.RETRY
                if (
                    exc.cause is not None
                    and exc.cause.failure is Failure.CONNECT_TIMEOUT
                    and not self.answered
                ):
                    handling = Handling.RETRY_FEW  # may be a firewall dropping packets to a wrong host
                if handling is Handling.RETRY_FEW:
                    few_retries[code] += 1
                    if few_retries[code] > RETRY_FEW_LIMIT:
                        error_class = (
                            MarketoConnectionError if exc.cause is not None else RetriesExhaustedError
                        )
                        raise error_class(
                            f"{exc.marketo_message} (still failing after {RETRY_FEW_LIMIT} retries)",
                            code=exc.code,
                            request_id=exc.request_id,
                            endpoint=exc.endpoint or request.path,
                        ) from None
                delay = backoff.full_jitter(next(waits))
                if code == "606":
                    # The window must move on before a new call can be accepted.
                    delay = max(delay, self.settings.rate_window_seconds / 4)
                if max(time.monotonic() - started, waited) + delay > self.settings.max_retry_seconds:
                    raise RetriesExhaustedError(
                        f"{exc.marketo_message} (gave up after {self.settings.max_retry_seconds:.0f} s "
                        "of retries)",
                        code=exc.code,
                        request_id=exc.request_id,
                        endpoint=exc.endpoint or request.path,
                    ) from None
                self._count_retry(code, delay)
                waited += delay
                logger.info("%s: %s; retrying in %.1f s", request.label, exc.marketo_message, delay)
                self._sleep(delay)
                continue
            except _Reauthenticate as exc:
                reauths += 1
                if reauths > REAUTH_LIMIT:
                    raise MarketoError(
                        f"token still refused after {REAUTH_LIMIT} renewals: {exc.error.marketo_message}",
                        code=exc.error.code,
                        request_id=exc.error.request_id,
                        endpoint=request.path,
                    ) from None
                self._auth.invalidate(token)
                with self._stats_lock:
                    self.stats.reauthentications += 1
                    self.stats.retries_by_code[exc.error.code or ""] += 1
                logger.info("%s: %s; renewing the access token", request.label, exc.error.marketo_message)
                continue
            return body

    @property
    def answered(self) -> bool:
        """Whether the instance has answered anything yet (identity or REST, any status)."""
        return self._answered or self._auth.answered

    def _unreachable(self, exc: TransientError) -> MarketoConnectionError | None:
        """The error to fail with at once when retrying cannot help, else None.

        Before the instance first answers, a refused connection, an unknown host or a failed TLS
        handshake means base_url is wrong; a certificate that fails verification never heals.
        Afterwards the same network errors are transient and retried.
        """
        cause = exc.cause
        if cause is None:
            return None
        if cause.failure in ALWAYS_FATAL:
            advice = (
                "TLS verification stays on: the certificate must be valid for that host (behind a "
                "TLS-intercepting proxy, point REQUESTS_CA_BUNDLE at its CA certificate)"
            )
        elif cause.failure in FATAL_BEFORE_FIRST_ANSWER and not self.answered:
            advice = "check base_url (or munchkin_id) and the network"
        else:
            return None
        return MarketoConnectionError(f"{exc.marketo_message}; {advice}", endpoint=exc.endpoint)

    def _encode_body(self, request: _Request) -> bytes | None:
        if request.json_body is not None:
            data = encode_json(request.json_body)
        elif request.form is not None:
            data = urlencode(request.form).encode()
        else:
            return None
        if len(data) > MAX_BODY_BYTES:
            raise ValueError(
                f"request body of {len(data)} bytes is over Marketo's 1 MB limit; send fewer records"
            )
        return data

    def _send(
        self,
        request: _Request,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        timeout: tuple[float, float],
    ) -> dict[str, Any]:
        """One HTTP exchange. Returns a successful body or raises a classified error."""
        session = self._session()
        waited_before = self._limiter.wait_seconds
        try:
            with self._limiter.slot():
                with self._stats_lock:
                    self.stats.calls += 1
                    self.stats.calls_by_endpoint[request.label] += 1
                response = session.request(
                    request.method,
                    url,
                    params=request.params,
                    data=data,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            cause = cause_of(exc)
            raise TransientError(
                f"cannot reach Marketo at {origin(url)}: {cause.text}",
                endpoint=request.path,
                may_have_run=_may_have_arrived(exc),
                cause=cause,
            ) from None
        finally:
            with self._stats_lock:
                self.stats.limiter_wait_seconds += max(self._limiter.wait_seconds - waited_before, 0.0)
        self._answered = True
        status = response.status_code
        logger.debug("%s %s -> HTTP %s", request.method, request.path, status)
        if 300 <= status < 400:
            raise MarketoRedirectError(
                f"Marketo answered HTTP {status} redirecting to {redirect_target(response, url)}; redirects "
                f"are not followed, so the token goes only to {origin(url)}: set base_url to the "
                "instance's REST endpoint (Admin > Web Services)",
                code=str(status),
                endpoint=request.path,
            )
        if status >= 500:
            raise TransientError(
                f"HTTP {status} from Marketo", code=str(status), endpoint=request.path, may_have_run=True
            )
        if status == 414:
            raise MarketoError("HTTP 414: request URI too long", code="414", endpoint=request.path)
        if status == 413:
            raise MarketoError("HTTP 413: request body over 1 MB", code="413", endpoint=request.path)
        if status != 200:
            raise MarketoError(
                f"unexpected HTTP {status} from Marketo", code=str(status), endpoint=request.path
            )
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise TransientError(
                "Marketo answered with a body that is not JSON", endpoint=request.path, may_have_run=True
            ) from None
        if not isinstance(body, dict):
            raise TransientError(
                "Marketo answered with an unexpected JSON body", endpoint=request.path, may_have_run=True
            )
        if body.get("success") is False:
            errors = body.get("errors") or [{}]
            code = str(errors[0].get("code", ""))
            message = str(errors[0].get("message", "unknown error"))
            request_id = body.get("requestId")
            handling = handling_for(code)
            if handling is Handling.REAUTHENTICATE:
                raise _Reauthenticate(
                    MarketoError(message, code=code, request_id=request_id, endpoint=request.path)
                )
            if handling in (Handling.RETRY, Handling.RETRY_FEW):
                raise TransientError(
                    message,
                    code=code,
                    request_id=request_id,
                    endpoint=request.path,
                    may_have_run=code not in NOT_EXECUTED_CODES,
                )
            raise error_for(code, message, request_id=request_id, endpoint=request.path)
        return body

    def _count_retry(self, code: str, delay: float) -> None:
        with self._stats_lock:
            self.stats.retries_by_code[code] += 1
            self.stats.retry_wait_seconds += delay


class _Reauthenticate(Exception):
    """Control flow inside the client: the token was refused."""

    def __init__(self, error: MarketoError) -> None:
        super().__init__(str(error))
        self.error = error


def _may_have_arrived(exc: requests.RequestException) -> bool:
    """False only when the connection was never made, so Marketo cannot have seen the call."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, urllib3.exceptions.NewConnectionError)


def _new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "marketo-opps"
    return session


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
