"""Connection settings shared by the tap, the target and the sandbox tests."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MARKETO_CALLS_PER_20S = 100
MARKETO_CONCURRENT_CALLS = 10

# Marketo's best-practice page asks one integration to use about half of the instance's
# limits, which every integration of the customer shares.
DEFAULT_MAX_CALLS_PER_20S = 50
DEFAULT_MAX_CONCURRENT_REQUESTS = 5
DEFAULT_RATE_WINDOW_SECONDS = 20  # Marketo's window
DEFAULT_MAX_RETRY_SECONDS = 300

_MUNCHKIN_RE = re.compile(r"^\d{3}-[A-Z]{3}-\d{3}$", re.IGNORECASE)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class MarketoSettings:
    """Everything needed to talk to one Marketo instance.

    `base_url` is the instance root (`https://123-ABC-456.mktorest.com`): REST lives under
    `/rest`, identity under `/identity`.
    """

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    max_calls_per_20s: int = DEFAULT_MAX_CALLS_PER_20S
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    daily_call_budget: int | None = None
    # Length of the rate window. Marketo's is 20 s; tests shrink it together with the sandbox's.
    rate_window_seconds: float = float(DEFAULT_RATE_WINDOW_SECONDS)
    # Total time one call may spend retrying before it gives up.
    max_retry_seconds: float = float(DEFAULT_MAX_RETRY_SECONDS)
    query_timeout_seconds: float = 30.0
    write_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", _normalize_base_url(self.base_url))
        if not self.client_id:
            raise SettingsError("client_id is required")
        if not self.client_secret:
            raise SettingsError("client_secret is required")
        if not 1 <= self.max_calls_per_20s <= MARKETO_CALLS_PER_20S:
            raise SettingsError(f"max_calls_per_20s must be between 1 and {MARKETO_CALLS_PER_20S}")
        if not 1 <= self.max_concurrent_requests <= MARKETO_CONCURRENT_CALLS:
            raise SettingsError(f"max_concurrent_requests must be between 1 and {MARKETO_CONCURRENT_CALLS}")
        if self.daily_call_budget is not None and self.daily_call_budget < 1:
            raise SettingsError("daily_call_budget must be a positive number of calls")
        if self.rate_window_seconds <= 0:
            raise SettingsError("rate_window_seconds must be positive")

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}/rest"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/identity/oauth/token"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MarketoSettings:
        """Build settings from a tap or target config (the setting names marketo_singer declares)."""
        base_url = config.get("base_url")
        munchkin_id = config.get("munchkin_id")
        if not base_url and not munchkin_id:
            raise SettingsError("set base_url (e.g. https://123-ABC-456.mktorest.com) or munchkin_id")
        if not base_url:
            if not _MUNCHKIN_RE.match(str(munchkin_id)):
                raise SettingsError("munchkin_id must look like 123-ABC-456")
            base_url = f"https://{munchkin_id}.mktorest.com"
        # Config readers hand numbers over as int, float or Decimal; the limiter wants one kind.
        converters: dict[str, Any] = {
            "max_calls_per_20s": int,
            "max_concurrent_requests": int,
            "daily_call_budget": int,
            "rate_window_seconds": float,
            "max_retry_seconds": float,
        }
        optional = {
            name: convert(config[name])
            for name, convert in converters.items()
            if config.get(name) is not None
        }
        return cls(
            base_url=str(base_url),
            client_id=str(config.get("client_id") or ""),
            client_secret=str(config.get("client_secret") or ""),
            **optional,
        )


def _normalize_base_url(url: str) -> str:
    """Accept the REST or identity URL as shown in Marketo's admin, keep only the instance root.

    Plain http is refused except on loopback: the client secret and tokens travel in it.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError("base_url must be an https URL such as https://123-ABC-456.mktorest.com")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise SettingsError("base_url must use https (plain http is allowed only for a local sandbox)")
    path = parts.path.rstrip("/")
    for suffix in ("/rest", "/identity"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return f"{parts.scheme}://{parts.netloc}{path}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
