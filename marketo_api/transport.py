"""One Marketo call, safely: limiter slot, token, retries, errors in `success:false` bodies.

`Transport` is the one retry loop of the project; `client.MarketoClient` builds the typed calls
on top of it. Bodies are parsed with exact decimals; every body is checked for `success:false`.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import backoff
import requests
import urllib3

from .answers import ClientStats
from .auth import TokenProvider
from .encoding import encode_json
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
class Request:
    method: str
    path: str  # below /rest, e.g. /v1/opportunities.json
    params: Mapping[str, str] | None = None
    form: Mapping[str, str] | None = None
    json_body: Any = None
    is_write: bool = False
    label: str = ""  # endpoint name for stats, e.g. "query opportunities"


class Transport:
    """Calls to one Marketo instance, safe to share between threads."""

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

    def close(self) -> None:
        for session in self._sessions:
            session.close()
        self._sessions.clear()
        self._auth_session.close()

    def _session(self) -> requests.Session:
        """One session (connection pool) per thread: requests.Session is not thread-safe."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _new_session()
            self._local.session = session
            self._sessions.append(session)
        return session

    def _call(self, request: Request, on_uncertain: Callable[[], None] | None = None) -> dict[str, Any]:
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

    def _encode_body(self, request: Request) -> bytes | None:
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
        request: Request,
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
