"""The HTTP server: a stdlib ThreadingHTTPServer speaking Marketo's REST and Identity dialect.

The handler only decodes a request, hands it to the module that answers it (:mod:`.identity`,
:mod:`.rest`, :mod:`.admin`), and encodes the answer; :mod:`.faults` decides what goes wrong.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import traceback
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import admin, faults, identity, rest
from .config import Fault, SandboxConfig
from .faults import Dropped, concurrency_message
from .params import ApiError, loose_form
from .query import make_page_token, read_page_token
from .rest import Call, Route, resolve_route
from .state import SandboxState
from .transport import Transport, request_id

__all__ = [
    "ApiError",
    "Call",
    "Dropped",
    "Handler",
    "Route",
    "SandboxHTTPServer",
    "make_page_token",
    "read_page_token",
    "request_id",
    "resolve_route",
]


class Handler(Transport):
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        cfg = self.state.config
        if cfg.max_uri_bytes is not None and len(self.path) > cfg.max_uri_bytes:
            self.read_body(cfg.max_body_bytes)
            self.send_html(414)
            return
        body, too_large = self.read_body(cfg.max_body_bytes)
        if too_large:
            self.send_html(413)
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        path = url.path
        if path.startswith("/_sandbox/"):
            self.send_admin(*admin.handle(self.state, method, path, query, body))
        elif path == "/identity/oauth/token":
            params = {k: v[0] for k, v in query.items()}
            if body and self.content_type() == rest.FORM:
                params.update({k: v[0] for k, v in loose_form(body).items()})
            status, payload = identity.token(self.state, method, params)
            self.send_json(status, payload)
        elif path == "/rest" or path.startswith("/rest/"):
            self._rest(method, path, query, body)
        else:
            self.send_html(404, count=False)

    def _rest(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        state = self.state
        cfg = state.config
        authorization = self.headers.get("Authorization") or ""
        call = Call(method, path, query, body, self.content_type(), authorization)
        call_no = state.begin_rest_call(call.endpoint)
        if not state.try_enter(cfg):
            self.send_api_error(ApiError("615", concurrency_message(cfg)))
            return
        self._holds_slot = True
        try:
            self._rest_inside(cfg, call, call_no)
        except Dropped:
            self.drop()
        finally:
            self.release_slot()

    def _rest_inside(self, cfg: SandboxConfig, call: Call, call_no: int) -> None:
        state = self.state
        fault = faults.before_call(
            state,
            cfg,
            call_no=call_no,
            path=call.path,
            is_write=call.is_write,
            execute=lambda: rest.execute(state, cfg, call),
        )
        if fault is not None and not fault.after_apply:
            self._send_fault(cfg, fault)
            return
        try:
            payload = rest.serve(state, cfg, call)
        except ApiError as err:
            self.send_api_error(err)
            return
        except Exception:  # a sandbox bug: answer like Marketo does for unhandled exceptions
            traceback.print_exc(file=sys.stderr)
            self.send_api_error(ApiError("611", "System error"))
            return
        if fault is not None:
            self._send_fault(cfg, fault)
            return
        self.send_rest(payload)

    def _send_fault(self, cfg: SandboxConfig, fault: Fault) -> None:
        answer = faults.answer(self.state, cfg, fault)
        if isinstance(answer, ApiError):
            self.send_api_error(answer)
        else:
            self.send_html(answer)


class SandboxHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its sandbox state and can close its open connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SandboxState, *, log_requests: bool = False) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.log_requests = log_requests
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError | OSError):
            return
        super().handle_error(request, client_address)
