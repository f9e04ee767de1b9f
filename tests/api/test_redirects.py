"""No secret or token leaves by redirect: identity and REST calls never follow one, and say where it pointed.

An instance that answers 307/308 would otherwise get the client secret re-POSTed to wherever the
Location points, even from https to plain http. Two local servers: the instance, and the target
of its redirects, which must never hear from the client.
"""

from __future__ import annotations

import http.server
import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from marketo_api import MarketoClient, MarketoObject, MarketoRedirectError, MarketoSettings
from tests.support.tls import self_signed_certificate

OPP = MarketoObject.OPPORTUNITY
SECRET = "redirect-test-secret-93ab"
TOKEN = "a7c1e0d2-5b1f-4c3e-9d7a-0f2e4b6c8d10:int"
Answer = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Records every request (path and body) and answers with `answer`."""

    seen: list[tuple[str, str]]
    answer: Answer

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.seen.append((self.path, body))
        type(self).answer(self)

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def send_json(handler: http.server.BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def redirect_to(location: str, status: int) -> Answer:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


class Server:
    def __init__(self, answer: Answer, context: ssl.SSLContext | None = None) -> None:
        self.seen: list[tuple[str, str]] = []
        handler = type("Handler", (_Handler,), {"seen": self.seen, "answer": staticmethod(answer)})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(answer: Answer, context: ssl.SSLContext | None = None) -> Server:
        started.append(Server(answer, context))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for 127.0.0.1, and the certificate to trust."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_certificate(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


def client_for(base_url: str) -> MarketoClient:
    settings = MarketoSettings(base_url=base_url, client_id="redirect-test", client_secret=SECRET)
    return MarketoClient(settings, sleep=lambda _: None)


@pytest.mark.parametrize(
    "case", [("http", 307), ("http", 308), ("https", 307), ("https", 308)], ids=lambda c: f"{c[0]}-{c[1]}"
)
def test_token_request_never_follows_a_redirect(
    servers: Callable[..., Server],
    tls_context: tuple[ssl.SSLContext, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, int],
) -> None:
    scheme, status = case
    caplog.set_level(logging.DEBUG)
    context, cert = tls_context
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # trust the instance's certificate
    elsewhere = servers(lambda h: send_json(h, 200, {"access_token": TOKEN, "expires_in": 3600}))
    location = f"http://localhost:{elsewhere.port}/identity/oauth/token"  # https -> http, too
    instance = servers(redirect_to(location, status), context if scheme == "https" else None)
    with client_for(instance.url) as c, pytest.raises(MarketoRedirectError) as err:
        c.describe(OPP)
    assert [path for path, _ in instance.seen] == ["/identity/oauth/token"]
    assert SECRET in instance.seen[0][1]  # the instance itself did get the form
    assert elsewhere.seen == []
    message = str(err.value)
    assert f"HTTP {status} redirecting to http://localhost:{elsewhere.port}" in message
    assert SECRET not in message + caplog.text


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_rest_call_never_follows_a_redirect(
    servers: Callable[..., Server], caplog: pytest.LogCaptureFixture, status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    elsewhere = servers(lambda h: send_json(h, 200, {"success": True, "result": []}))

    def instance_answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        if handler.path.startswith("/identity/"):
            send_json(handler, 200, {"access_token": TOKEN, "expires_in": 3600})
        else:
            redirect_to(f"http://localhost:{elsewhere.port}{handler.path}", status)(handler)

    instance = servers(instance_answer)
    with client_for(instance.url) as c, pytest.raises(MarketoRedirectError) as err:
        c.describe(OPP)
    assert [path for path, _ in instance.seen] == [
        "/identity/oauth/token",
        "/rest/v1/opportunities/describe.json",
    ]
    assert elsewhere.seen == []
    assert err.value.code == str(status)
    assert f"redirecting to http://localhost:{elsewhere.port}" in str(err.value)
    assert TOKEN not in str(err.value) + caplog.text
    assert SECRET not in str(err.value) + caplog.text
