"""A wrong base_url fails at once, naming scheme, host, port and cause; later network errors are retried.

Everything stays on this machine: refused = a loopback port nobody listens on, DNS = a name under
the reserved .invalid TLD (RFC 2606), certificate = a local HTTPS server with a self-signed cert.
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from marketo_api import (
    MarketoAuthenticationError,
    MarketoClient,
    MarketoConnectionError,
    MarketoObject,
    MarketoSettings,
)
from marketo_api.network import Failure, cause_of
from marketo_sandbox import Sandbox
from tests.support.tls import self_signed_certificate

OPP = MarketoObject.OPPORTUNITY
SECRET = "network-test-secret-5f1c"
# The old behaviour retried for max_retry_seconds (300 s); a generous bound guards the regression.
FAST = 30.0


def client_for(base_url: str, slept: list[float]) -> MarketoClient:
    settings = MarketoSettings(base_url=base_url, client_id="network-test", client_secret=SECRET)
    return MarketoClient(settings, sleep=slept.append)


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening, so connecting to it is refused."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


def test_refused_connection_fails_at_once_naming_the_host(unused_port: int) -> None:
    slept: list[float] = []
    started = time.monotonic()
    with (
        client_for(f"http://127.0.0.1:{unused_port}", slept) as c,
        pytest.raises(MarketoConnectionError) as err,
    ):
        c.describe(OPP)
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert f"http://127.0.0.1:{unused_port}" in message
    assert "connection refused" in message
    assert "base_url" in message
    assert slept == []  # not retried
    assert elapsed < FAST


def test_unknown_host_fails_at_once_naming_the_host() -> None:
    slept: list[float] = []
    with (
        client_for("https://no-such-instance.invalid", slept) as c,
        pytest.raises(MarketoConnectionError) as err,
    ):
        c.describe(OPP)
    assert "https://no-such-instance.invalid:443" in str(err.value)
    assert "host name not found" in str(err.value)
    assert slept == []


# ---- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed (made here with the openssl CLI)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_certificate(folder)
    return cert, key


class _Refusing(http.server.BaseHTTPRequestHandler):
    """Identity that refuses every credential; records each request that got through TLS."""

    seen: list[str]

    def do_POST(self) -> None:
        self.seen.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": "invalid_client"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def https_server(self_signed: tuple[Path, Path]) -> Iterator[tuple[str, list[str]]]:
    cert, key = self_signed
    seen: list[str] = []
    handler = type("Handler", (_Refusing,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_untrusted_certificate_fails_at_once_and_verification_stays_on(
    https_server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = https_server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    slept: list[float] = []
    with client_for(url, slept) as c, pytest.raises(MarketoConnectionError) as err:
        c.describe(OPP)
    message = str(err.value)
    assert url.replace("https://", "") in message  # host and port
    assert "certificate verification failed (self-signed certificate)" in message
    assert slept == []
    assert seen == []  # the handshake failed: no request, no secret, reached the server


def test_a_trusted_certificate_reaches_the_server(
    https_server: tuple[str, list[str]], self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same server once its certificate is trusted: the refusal above was verification, not TLS."""
    url, seen = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(self_signed[0]))
    with client_for(url, []) as c, pytest.raises(MarketoAuthenticationError, match="invalid_client"):
        c.describe(OPP)
    assert seen == ["/identity/oauth/token"]


# ---- after the first answer ----------------------------------------------------------------


def test_refused_connection_after_first_answer_is_retried(make_sandbox: Callable[..., Sandbox]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sb = make_sandbox(port=port)
    slept: list[float] = []

    def restart_while_waiting(delay: float) -> None:
        slept.append(delay)
        sb.start()

    settings = MarketoSettings.from_config(sb.connection_settings())
    with MarketoClient(settings, sleep=restart_while_waiting) as c:
        c.describe(OPP)
        sb.stop()  # Marketo briefly unreachable mid-run
        assert c.describe(OPP).id_field == "marketoGUID"
        assert c.stats.retries_by_code["network"] == 1
    assert len(slept) == 1


def test_connect_timeouts_before_first_answer_are_retried_only_a_few_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host that drops connection attempts (a firewall): a few tries, then the host is named."""
    import marketo_api.auth

    monkeypatch.setattr(marketo_api.auth, "IDENTITY_TIMEOUT", (0.2, 1.0))
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = int(full.getsockname()[1])
        # Fill the accept queue (nobody accepts); further handshakes go unanswered.
        fillers = _fill_accept_queue(port)
        try:
            slept: list[float] = []
            with (
                client_for(f"http://127.0.0.1:{port}", slept) as c,
                pytest.raises(MarketoConnectionError) as err,
            ):
                c.describe(OPP)
        finally:
            for filler in fillers:
                filler.close()
    assert f"http://127.0.0.1:{port}" in str(err.value)
    assert "connect timeout" in str(err.value)
    assert len(slept) == 3


def _fill_accept_queue(port: int) -> list[socket.socket]:
    fillers: list[socket.socket] = []
    for _ in range(8):
        try:
            fillers.append(socket.create_connection(("127.0.0.1", port), timeout=0.3))
        except TimeoutError:
            return fillers
    raise AssertionError("the listen backlog never filled up")


def test_causes_are_told_apart(unused_port: int) -> None:
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get(f"http://127.0.0.1:{unused_port}/", timeout=2)
    with pytest.raises(requests.ConnectionError) as unknown:
        requests.get("https://no-such-instance.invalid/", timeout=2)
    assert cause_of(refused.value).failure is Failure.REFUSED
    assert cause_of(unknown.value).failure is Failure.DNS
    assert cause_of(requests.exceptions.ConnectTimeout()).failure is Failure.CONNECT_TIMEOUT
    dropped = requests.ConnectionError("Connection aborted.", ConnectionResetError(104, "reset"))
    assert cause_of(dropped).failure is Failure.DROPPED
