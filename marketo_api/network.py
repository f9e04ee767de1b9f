"""What went wrong on the wire, in words a user can act on, and which of it is worth retrying.

requests wraps the real cause (refused, unknown host, bad certificate) several exceptions deep;
the retry loop needs it to fail fast on a wrong base_url instead of retrying for minutes.
"""

from __future__ import annotations

import enum
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
import urllib3


class Failure(enum.Enum):
    CERTIFICATE = "certificate"  # the server's certificate failed verification
    TLS = "tls"  # another TLS handshake failure
    DNS = "dns"  # the host name does not resolve
    REFUSED = "refused"  # nothing listens on that port
    CONNECT = "connect"  # another failure to open the connection (unreachable network, ...)
    CONNECT_TIMEOUT = "connect-timeout"  # no answer while connecting
    DROPPED = "dropped"  # the connection was made, then broke or timed out


# Before the instance has ever answered, these mean base_url is wrong: retrying cannot help.
FATAL_BEFORE_FIRST_ANSWER = frozenset(
    {Failure.CERTIFICATE, Failure.TLS, Failure.DNS, Failure.REFUSED, Failure.CONNECT}
)
# A certificate that fails verification is never retried: it is either wrong or an interception.
ALWAYS_FATAL = frozenset({Failure.CERTIFICATE})


@dataclass(frozen=True)
class NetworkCause:
    failure: Failure
    text: str  # e.g. "connection refused (nothing listens on that port)"


def origin(url: str) -> str:
    """scheme://host:port of `url`, the part a user compares with base_url."""
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}" if port else f"{parts.scheme}://{host}"


def redirect_target(response: requests.Response, request_url: str) -> str:
    """The origin a 3xx answer points to (relative Locations resolve against the request)."""
    location = response.headers.get("Location")
    if not location:
        return "nowhere (no Location header)"
    return origin(urljoin(request_url, location))


def cause_of(exc: requests.RequestException) -> NetworkCause:
    """The innermost cause of a requests failure that says what to fix."""
    chain = list(_chain(exc))
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            detail = item.verify_message or item.reason or "certificate verify failed"
            return NetworkCause(Failure.CERTIFICATE, f"TLS certificate verification failed ({detail})")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return NetworkCause(Failure.CONNECT_TIMEOUT, "no answer while connecting (connect timeout)")
    for item in chain:
        if isinstance(item, ssl.SSLError):
            return NetworkCause(Failure.TLS, f"TLS handshake failed ({item.reason or type(item).__name__})")
    for item in chain:
        if isinstance(item, (urllib3.exceptions.NameResolutionError, socket.gaierror)):
            return NetworkCause(Failure.DNS, "host name not found (DNS lookup failed)")
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return NetworkCause(Failure.REFUSED, "connection refused (nothing listens on that port)")
    for item in chain:
        if isinstance(item, urllib3.exceptions.NewConnectionError):
            errors = (i.strerror for i in _chain(item) if isinstance(i, OSError) and i.strerror)
            detail = next(errors, "no connection")
            return NetworkCause(Failure.CONNECT, f"could not connect ({detail})")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return NetworkCause(Failure.DROPPED, "no answer in time (read timeout)")
    return NetworkCause(Failure.DROPPED, f"connection broken ({type(exc).__name__})")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """exc and everything it wraps: args (requests, MaxRetryError.reason), __cause__, __context__."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        reason = getattr(item, "reason", None)
        inner = (*item.args, reason, item.__cause__, item.__context__)
        todo.extend(i for i in inner if isinstance(i, BaseException))
