"""Marketo errors and how each one is handled.

Marketo reports most failures as HTTP 200 with `success:false`; the code decides whether a call
is retried, re-authenticated or fails. Exception text carries code, message, requestId and the
endpoint path, never a secret or a token.
"""

from __future__ import annotations

import enum

from .network import NetworkCause


class Handling(enum.Enum):
    RETRY = "retry"  # back off with jitter, then send again
    RETRY_FEW = "retry-few"  # as RETRY, but only a few times: the cause may be permanent
    REAUTHENTICATE = "reauthenticate"  # fetch a new token, then send again
    FAIL = "fail"


# Response-level codes (sources: ../shared/notes/marketo-api.md §2).
_HANDLING: dict[str, Handling] = {
    "502": Handling.RETRY,  # bad gateway, likely a timeout
    "604": Handling.RETRY,  # request timed out
    "606": Handling.RETRY,  # rate limit: 100 calls / 20 s
    "608": Handling.RETRY,  # API temporarily unavailable
    "615": Handling.RETRY,  # 10 concurrent calls
    "713": Handling.RETRY,  # transient error
    "611": Handling.RETRY_FEW,  # "system error": all unhandled exceptions
    "614": Handling.RETRY_FEW,  # invalid subscription, usually temporary
    "601": Handling.REAUTHENTICATE,  # token invalid
    "602": Handling.REAUTHENTICATE,  # token expired
}

# Record-level reason codes worth sending again in a later, smaller batch.
TRANSIENT_REASON_CODES = frozenset({"1014", "1019", "1022", "1029"})

_ADVICE: dict[str, str] = {
    "603": "access denied: give the API user's role the 'Read-Write Opportunity' permission "
    "(or 'Read-Only Opportunity' for reads; schema field calls need 'Read-Write Schema Standard "
    "Field'), and check the IP allowlist under Admin > Web Services",
    "605": "HTTP method not supported by this endpoint",
    "609": "Marketo could not parse the JSON body",
    "610": "requested resource not found: check base_url and the endpoint path",
    "612": "invalid Content-Type",
    "701": "a required value is blank",
    "718": "externalSalesPersonId names no sales person in this instance: create the sales person "
    "first or correct the value",
    "1001": "a value does not have the type its field requires",
    "1002": "a required parameter is missing",
    "1003": "invalid request parameters",
    "1006": "a field named in the request does not exist in this instance",
    "1011": "the field cannot be used here: filterType and lookup fields must be searchable fields "
    "of the object's describe",
    "1018": "CRM sync is enabled on this instance: Marketo makes opportunities and opportunity "
    "roles read-only (role APIs are unavailable) when native Salesforce or Dynamics sync is on",
}


def handling_for(code: str) -> Handling:
    return _HANDLING.get(code, Handling.FAIL)


class MarketoError(Exception):
    """A call Marketo answered with an error, or that could not be completed."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.code = code
        self.marketo_message = message
        self.request_id = request_id
        self.endpoint = endpoint
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = []
        if self.code:
            parts.append(f"Marketo error {self.code}: {self.marketo_message}")
        else:
            parts.append(self.marketo_message)
        if self.code in _ADVICE:
            parts.append(f"({_ADVICE[self.code]})")
        if self.endpoint:
            parts.append(f"[endpoint {self.endpoint}]")
        if self.request_id:
            parts.append(f"[requestId {self.request_id}]")
        return " ".join(parts)


class MarketoAuthenticationError(MarketoError):
    """The identity endpoint refused the client credentials."""


class MarketoPermissionError(MarketoError):
    """603: the API user lacks a permission."""


class MarketoQuotaExceededError(MarketoError):
    """607: the instance's daily quota is used up; it resets at 12:00 AM US Central time."""


class CallBudgetExhaustedError(MarketoError):
    """This process reached its configured `daily_call_budget`; no call was sent."""


class CrmSyncEnabledError(MarketoError):
    """1018: native CRM sync makes opportunities and roles read-only."""


class MarketoConnectionError(MarketoError):
    """The instance could not be reached at all (refused, unknown host, bad certificate): check base_url."""


class MarketoRedirectError(MarketoError):
    """Marketo answered with a redirect; never followed, so secret and token stay on base_url's host."""


class RetriesExhaustedError(MarketoError):
    """A retryable error persisted past the retry limits."""


class TransientError(MarketoError):
    """Internal: a failure that the retry loop may retry (never escapes the client)."""

    def __init__(
        self,
        message: str,
        *,
        may_have_run: bool = False,
        cause: NetworkCause | None = None,
        **details: str | None,
    ) -> None:
        super().__init__(message, **details)
        # Whether Marketo may have executed the call (a timeout, 604, 5xx): a write sent again
        # could then be a repeat.
        self.may_have_run = may_have_run
        # Set when no answer arrived at all; decides whether the failure is worth retrying.
        self.cause = cause


def error_for(code: str, message: str, *, request_id: str | None, endpoint: str) -> MarketoError:
    """The exception class a response-level code maps to."""
    cls: type[MarketoError] = {
        "603": MarketoPermissionError,
        "607": MarketoQuotaExceededError,
        "1018": CrmSyncEnabledError,
    }.get(code, MarketoError)
    if code == "607":
        message = f"{message}: the daily API quota resets at 12:00 AM US Central time"
    return cls(message, code=code, request_id=request_id, endpoint=endpoint)
