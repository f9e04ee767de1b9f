"""Client-credentials tokens from Marketo's identity endpoint."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import requests

from .errors import MarketoAuthenticationError, MarketoRedirectError, TransientError
from .network import cause_of, origin, redirect_target

logger = logging.getLogger("marketo_api.auth")

# Renew this long before Marketo says the token expires, so a call never leaves with a token
# that dies on the way.
RENEW_MARGIN_SECONDS = 60.0
IDENTITY_TIMEOUT = (10.0, 30.0)
TOKEN_ENDPOINT = "/identity/oauth/token"  # noqa: S105 (a path, not a password)


class TokenProvider:
    """Caches one access token per client and renews it before expiry or on demand.

    The secret goes in a form body (never in a URL) and the token is handed out only for the
    `Authorization` header.
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        session: requests.Session,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._session = session
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.tokens_fetched = 0
        self.answered = False  # the identity endpoint has answered at least once (any status)

    def __repr__(self) -> str:
        return f"TokenProvider(token_url={self._token_url!r})"

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """Drop `token` after Marketo answered 601/602, even if it looked valid to us.

        Only the token that was rejected is dropped, so when several threads hit 601 at once
        the first renews and the others pick up the new token.
        """
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> None:
        asked_at = self._clock()
        try:
            response = self._session.post(
                self._token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._client_secret,
                },
                timeout=IDENTITY_TIMEOUT,
                # A 307/308 would re-send the secret to wherever it points, even over plain http.
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            cause = cause_of(exc)
            raise TransientError(
                f"cannot reach Marketo at {origin(self._token_url)}: {cause.text}",
                endpoint=TOKEN_ENDPOINT,
                cause=cause,
            ) from None
        self.answered = True
        if 300 <= response.status_code < 400:
            raise MarketoRedirectError(
                f"identity endpoint answered HTTP {response.status_code} redirecting to "
                f"{redirect_target(response, self._token_url)}; not followed, so the client secret "
                f"goes only to {origin(self._token_url)}: set base_url to the instance's REST endpoint "
                "(Admin > Web Services)",
                endpoint=TOKEN_ENDPOINT,
            )
        if response.status_code == 401:
            raise MarketoAuthenticationError(
                f"identity endpoint refused the client credentials (HTTP 401 "
                f"{_identity_error(response)}); check client_id and client_secret of the "
                "LaunchPoint custom service",
                endpoint=TOKEN_ENDPOINT,
            )
        if response.status_code >= 500:
            raise TransientError(
                f"identity endpoint answered HTTP {response.status_code}", endpoint=TOKEN_ENDPOINT
            )
        try:
            body = response.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise MarketoAuthenticationError(
                f"identity endpoint answered HTTP {response.status_code} without an access token",
                endpoint=TOKEN_ENDPOINT,
            ) from None
        self._token = token
        margin = min(RENEW_MARGIN_SECONDS, expires_in / 10)
        self._renew_at = asked_at + max(expires_in - margin, 0.0)
        self.tokens_fetched += 1
        logger.debug("access token obtained, expires in %.0f s", expires_in)


def _identity_error(response: requests.Response) -> str:
    """Marketo's error name (e.g. invalid_client), never the echoed request."""
    try:
        error = json.loads(response.text).get("error")
    except (ValueError, AttributeError):
        return "unauthorized"
    return str(error) if isinstance(error, str) and error.isidentifier() else "unauthorized"
