"""Calls to the Marketo sandbox over HTTP for its tests: paths, a token, a tiny client, answer checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from marketo_sandbox import Sandbox

OPP = "/rest/v1/opportunities.json"
OPP_DELETE = "/rest/v1/opportunities/delete.json"
ROLES = "/rest/v1/opportunities/roles.json"
ROLES_DELETE = "/rest/v1/opportunities/roles/delete.json"
DOC_GUID_A = "dff23271-f996-47d7-984f-f2676861b5fa"
DOC_GUID_C = "dff23271-f996-47d7-984f-f2676861b5fc"

MakeSandbox = Callable[..., Sandbox]


class Api:
    """A tiny authenticated client for the tests."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.base = sb.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {identity(sb).json()['access_token']}"

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        r = self.session.get(self.base + path, params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: Any) -> dict[str, Any]:
        r = self.session.post(self.base + path, json=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()


def identity(sb: Sandbox, secret: str | None = None) -> requests.Response:
    """The token request, with the sandbox's client secret unless another is given."""
    params = {
        "grant_type": "client_credentials",
        "client_id": sb.config.client_id,
        "client_secret": secret if secret is not None else sb.config.client_secret,
    }
    return requests.get(sb.base_url + "/identity/oauth/token", params=params, timeout=10)


def error_code(body: dict[str, Any]) -> str:
    """The code of a refused call, after checking the answer is shaped as Marketo's."""
    assert body["success"] is False, body
    assert "result" not in body
    assert "#" in body["requestId"]
    return str(body["errors"][0]["code"])


def reasons(body: dict[str, Any]) -> list[str | None]:
    """Per record of a write: the code it was skipped with, or None if it was applied."""
    assert body["success"] is True, body
    return [r["reasons"][0]["code"] if r["status"] == "skipped" else None for r in body["result"]]
