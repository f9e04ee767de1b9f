"""The :class:`Sandbox`: a running Marketo emulator on loopback, in a background thread."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from . import seed
from .config import SandboxConfig
from .schema import opportunity_schema, role_schema
from .server import SandboxHTTPServer
from .state import SandboxState
from .store import Store


class Sandbox:
    """A Marketo REST/Identity emulator.

    ``Sandbox(config)`` builds the seeded store immediately; ``start()`` (or ``with``) binds
    ``config.host``/``config.port`` (port 0 picks a free one) and serves in a daemon thread.
    """

    def __init__(
        self, config: SandboxConfig | None = None, *, log_requests: bool = False, **overrides: Any
    ) -> None:
        cfg = config if config is not None else SandboxConfig()
        if overrides:
            cfg = cfg.replace(**overrides)
        opportunities = opportunity_schema(
            cfg.custom_fields, sales_person_reference=cfg.sales_person_check is not None
        )
        self.store = Store(opportunities, role_schema(), seed=cfg.seed, path=cfg.store_file or ":memory:")
        leads, opps, roles = seed.build(cfg)
        self.store.load(leads, opps, roles)
        self._state = SandboxState(cfg, self.store)
        self._log_requests = log_requests
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        cfg = self._state.config
        server = SandboxHTTPServer((cfg.host, cfg.port), self._state, log_requests=self._log_requests)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="marketo-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = None
        self._thread = None
        server.shutdown()
        server.server_close()
        server.close_all_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # ------------------------------------------------------------------ addresses
    @property
    def host(self) -> str:
        return self._state.config.host

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("sandbox is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = self.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    @property
    def config(self) -> SandboxConfig:
        return self._state.config

    def connection_settings(self) -> dict[str, str]:
        cfg = self._state.config
        return {"base_url": self.base_url, "client_id": cfg.client_id, "client_secret": cfg.client_secret}

    # ------------------------------------------------------------------ control
    def stats(self) -> dict[str, Any]:
        """The same dict as ``GET /_sandbox/stats``."""
        return self._state.stats()

    def call_times(self) -> dict[str, Any]:
        """The same dict as ``GET /_sandbox/call-times``: admission times of REST calls."""
        return self._state.call_times()

    def reset_stats(self) -> None:
        """Zero counters, REST call numbering (for ``Fault.calls``), the per-record counts of
        ``RecordFault.times``, quota and rate window."""
        self._state.reset_stats()

    def configure(self, **changes: Any) -> None:
        """Change limit/fault/behaviour fields at runtime (thread-safe; next request sees them)."""
        self._state.configure(**changes)

    def revoke_tokens(self) -> None:
        """Every issued token becomes unknown (REST answers 601); identity issues a new one."""
        self._state.revoke_tokens()

    def expire_tokens(self) -> None:
        """Every issued token becomes expired (REST answers 602); identity issues a new one."""
        self._state.expire_tokens()

    def issue_token(self) -> str:
        """A valid access token, exactly as the identity endpoint would hand it out."""
        return self._state.issue_token()[0]
