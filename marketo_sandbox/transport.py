"""HTTP/1.1 transport: request bodies in, responses out, as Marketo's gateway sends them.

Everything here is about bytes on a keep-alive connection: chunked and oversized bodies, gzip,
content types, Marketo's JSON envelope, nginx's HTML error pages, and the moment the concurrency
slot of a REST call is given back.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from .params import ApiError

if TYPE_CHECKING:
    from .server import SandboxHTTPServer
    from .state import SandboxState

#: A body larger than this is not even drained: the connection is closed instead.
MAX_DRAIN_BYTES = 64 * 1024 * 1024
HTML_REASONS = {
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    404: "Not Found",
}
JSON_TYPE = "application/json;charset=UTF-8"

_request_counter = itertools.count(1)


def request_id() -> str:
    n = next(_request_counter)
    return f"{(n * 2654435761) & 0xFFFFF:x}#{int(time.time() * 1000):x}"


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Transport(BaseHTTPRequestHandler):
    """The byte-level half of the handler; :class:`~marketo_sandbox.server.Handler` adds the rest."""

    protocol_version = "HTTP/1.1"
    server_version = "MarketoSandbox/1.0"
    sys_version = ""
    timeout = 300
    # Buffered writes plus TCP_NODELAY: separate small header and body writes on a keep-alive
    # connection would otherwise meet Nagle's algorithm and delayed ACKs (+40 ms per response).
    wbufsize = 1 << 16
    server: SandboxHTTPServer
    _holds_slot = False

    @property
    def state(self) -> SandboxState:
        return self.server.state

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---- in -----------------------------------------------------------------------------
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def read_body(self, limit: int | None) -> tuple[bytes, bool]:
        """The request body and whether it exceeded ``limit`` (then it is drained, not kept)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            if length > MAX_DRAIN_BYTES:
                self.close_connection = True
                return b"", True
            remaining = length
            while remaining > 0:
                got = self.rfile.read(min(remaining, 1 << 16))
                if not got:
                    break
                remaining -= len(got)
            return b"", True
        return (self.rfile.read(length) if length > 0 else b""), False

    def _read_chunked(self, limit: int | None) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                n = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                self.close_connection = True
                return b"", True
            if n == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            data = self.rfile.read(n)
            self.rfile.readline(3)
            size += len(data)
            if size > MAX_DRAIN_BYTES:
                self.close_connection = True
                return b"", True
            if limit is None or size <= limit:
                chunks.append(data)
        return b"".join(chunks), limit is not None and size > limit

    # ---- out ----------------------------------------------------------------------------
    def release_slot(self) -> None:
        """Give back the concurrency slot; done just before a response leaves, so a client that
        has read its answer can never find its own finished request still counted as in flight."""
        if self._holds_slot:
            self._holds_slot = False
            self.state.leave()

    def write(self, status: int, body: bytes, content_type: str, *, count: bool = True) -> None:
        self.release_slot()
        if count:  # before the answer leaves, so a client that has read it finds it counted
            self.state.count_status(status)
        accept = (self.headers.get("Accept-Encoding") or "").lower()
        gzipped = (
            self.state.config.gzip
            and len(body) >= 1024
            and "gzip" in accept
            and content_type.startswith("application/json")
        )
        if gzipped:
            body = gzip.compress(body, compresslevel=5)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()  # into the buffered wfile: headers and body leave in one send()
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, payload: Any, *, count: bool = True) -> None:
        self.write(status, json_bytes(payload), JSON_TYPE, count=count)

    def send_admin(self, status: int, payload: Any) -> None:
        """An admin answer: one that cannot be encoded is a bad request too (a lone surrogate in
        a stored string, say), and never counted."""
        try:
            body = json_bytes(payload)
        except (ValueError, TypeError) as exc:
            status, body = 400, json_bytes({"error": str(exc)})
        self.write(status, body, JSON_TYPE, count=False)

    def send_html(self, status: int, *, count: bool = True) -> None:
        reason = HTML_REASONS.get(status, "Error")
        page = (
            f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        self.write(status, page.encode(), "text/html", count=count)

    def send_rest(self, payload: dict[str, Any]) -> None:
        if self.state.config.spec_complete:  # every envelope member the spec marks required
            payload = {"errors": [], "result": [], "warnings": [], **payload}
        self.send_json(200, {"requestId": request_id(), **payload})

    def send_api_error(self, err: ApiError) -> None:
        """A response-level error: HTTP 200, ``success:false``."""
        self.state.count_error(err.code)
        self.send_rest({"success": False, "errors": [{"code": err.code, "message": err.message}]})

    def drop(self) -> None:
        """Close the connection without an answer (a ``drop`` or ``late`` fault)."""
        self.release_slot()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
