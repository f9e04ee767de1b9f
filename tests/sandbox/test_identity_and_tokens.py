"""The sandbox's identity endpoint and access tokens: one token per client, expiry, revocation, 601/602."""

from __future__ import annotations

import time

import requests

from marketo_sandbox import Sandbox
from tests.support.sandbox_calls import Api, MakeSandbox, error_code, identity


def test_identity_same_token_bad_secret_and_form_body(sandbox: Sandbox) -> None:
    first = identity(sandbox)
    assert first.status_code == 200
    tok = first.json()
    assert tok["token_type"] == "bearer"
    assert tok["scope"] == "apis@sandbox.local"
    assert tok["access_token"].endswith(":sb")
    assert 3590 <= tok["expires_in"] <= 3600
    second = identity(sandbox).json()
    assert second["access_token"] == tok["access_token"]
    form = requests.post(
        sandbox.base_url + "/identity/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "test-client", "client_secret": "test-secret"},
        timeout=10,
    )
    assert form.json()["access_token"] == tok["access_token"]
    bad = identity(sandbox, secret="wrong")
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}
    stats = sandbox.stats()
    assert stats["identity_calls"] == 4
    assert stats["rest_calls"] == 0
    assert stats["quota_used"] == 0


def test_token_expiry_revocation_and_query_param(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(token_ttl_seconds=0.6)
    api = Api(sb)
    describe = "/rest/v1/opportunities/describe.json"
    assert api.get(describe)["success"] is True
    old = api.session.headers["Authorization"]
    time.sleep(0.7)
    assert error_code(api.get(describe)) == "602"
    assert api.get(describe)["errors"][0]["message"] == "Access token expired"
    fresh = identity(sb).json()["access_token"]
    assert f"Bearer {fresh}" != old
    api.session.headers["Authorization"] = f"Bearer {fresh}"
    assert api.get(describe)["success"] is True

    sb.configure(token_ttl_seconds=3600)
    api.session.headers["Authorization"] = f"Bearer {identity(sb).json()['access_token']}"
    assert api.get(describe)["success"] is True
    sb.revoke_tokens()
    body = api.get(describe)
    assert error_code(body) == "601"
    assert body["errors"][0]["message"] == "Access token invalid"

    valid = identity(sb).json()["access_token"]
    legacy = requests.get(sb.base_url + describe, params={"access_token": valid}, timeout=10).json()
    assert error_code(legacy) == "601"
    assert "no longer supported" in legacy["errors"][0]["message"]
    # ... even together with a valid header
    both = requests.get(
        sb.base_url + describe,
        params={"access_token": valid},
        headers={"Authorization": f"Bearer {valid}"},
        timeout=10,
    ).json()
    assert error_code(both) == "601"
    assert error_code(requests.get(sb.base_url + describe, timeout=10).json()) == "601"
    assert (
        error_code(
            requests.get(sb.base_url + describe, headers={"Authorization": "Bearer nope"}, timeout=10).json()
        )
        == "601"
    )
    # 601/602 answers are not counted against the rate limit or the quota.
    stats = sb.stats()
    assert stats["errors_by_code"] == {"602": 2, "601": 5}
    assert stats["quota_used"] == 3
