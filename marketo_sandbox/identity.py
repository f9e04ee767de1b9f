"""Identity: access tokens from ``/identity/oauth/token``, and the token check of every REST call."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from .config import SandboxConfig
from .params import ApiError, loose_form

if TYPE_CHECKING:
    from .state import SandboxState

LEGACY_AUTH_PARAM_MESSAGE = (
    "Access token invalid: the 'access_token' query parameter is no longer supported "
    "(removed 2026-08-31); send 'Authorization: Bearer <token>'"
)


def token(state: SandboxState, method: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body Identity answers; it is no REST call (no envelope, no limits)."""
    state.count_identity(f"{method} /identity/oauth/token")
    if method not in ("GET", "POST"):
        return 405, {"error": "invalid_request", "error_description": "Method not allowed"}
    grant = params.get("grant_type")
    if grant != "client_credentials":
        error = "invalid_request" if not grant else "unsupported_grant_type"
        return 400, {"error": error, "error_description": f"Unsupported grant type: {grant}"}
    cfg = state.config
    good_id = hmac.compare_digest(str(params.get("client_id", "")).encode(), cfg.client_id.encode())
    good_secret = hmac.compare_digest(
        str(params.get("client_secret", "")).encode(), cfg.client_secret.encode()
    )
    if not (good_id and good_secret):
        return 401, {"error": "invalid_client", "error_description": "Bad client credentials"}
    access_token, remaining = state.issue_token()
    return 200, {
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": remaining,
        "scope": "apis@sandbox.local",
    }


def check_auth(
    state: SandboxState,
    cfg: SandboxConfig,
    authorization: str,
    query: dict[str, list[str]],
    form_body: bytes,
) -> None:
    """The ``Authorization: Bearer`` token; an ``access_token`` parameter (in the query, or in the
    form body of a ``_method=GET`` POST) as ``cfg.legacy_param_auth`` says: refused outright,
    ignored, or accepted."""
    legacy = query.get("access_token")
    if legacy is None and form_body:
        legacy = loose_form(form_body).get("access_token")
    if legacy is not None and cfg.legacy_param_auth == "refused":
        raise ApiError("601", LEGACY_AUTH_PARAM_MESSAGE)
    scheme, _, bearer = authorization.strip().partition(" ")
    if authorization.strip() == "" and legacy is not None and cfg.legacy_param_auth == "accepted":
        scheme, bearer = "bearer", legacy[0]
    if scheme.lower() != "bearer" or not bearer.strip():
        raise ApiError("601", "Access token invalid")
    problem = state.check_token(bearer.strip())
    if problem == "601":
        raise ApiError("601", "Access token invalid")
    if problem == "602":
        raise ApiError("602", "Access token expired")
