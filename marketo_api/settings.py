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
        """Build settings from a tap or target config (the names in SETTINGS_JSON_SCHEMA)."""
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


def setting_property(json_type: Any, title: str, description: str, **extra: Any) -> dict[str, Any]:
    """One config setting in JSON Schema, with the title and description Meltano shows."""
    return {"type": json_type, "title": title, "description": description, **extra}


def redact_secrets(messages: list[str], config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Config validation messages with the values of secret settings blanked out.

    jsonschema quotes the offending value ("987 is not of type 'string'"), which for
    client_secret would print the secret.
    """
    secrets = [
        str(config[name])
        for name, prop in schema.get("properties", {}).items()
        if prop.get("secret") and config.get(name) not in (None, "")
    ]
    # Whole values only: a short secret must not mangle words that happen to contain it.
    patterns = [re.compile(rf"(?<!\w){re.escape(secret)}(?!\w)") for secret in secrets]
    cleaned = []
    for message in messages:
        text = message
        for pattern in patterns:
            text = pattern.sub("<redacted>", text)
        cleaned.append(text)
    return cleaned


# Plain JSON Schema (no Singer types), merged into the tap's and the target's config schema so
# both advertise the same connection settings with the same titles and defaults.
SETTINGS_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "base_url": setting_property(
            ["string", "null"],
            "Base URL",
            "Instance root, e.g. https://123-ABC-456.mktorest.com (the REST endpoint shown under "
            "Admin > Web Services, with or without /rest). Either this or munchkin_id.",
        ),
        "munchkin_id": setting_property(
            ["string", "null"],
            "Munchkin ID",
            "Instance id such as 123-ABC-456; used to build base_url when base_url is not set.",
        ),
        "client_id": setting_property("string", "Client ID", "Client Id of the LaunchPoint custom service."),
        "client_secret": setting_property(
            "string",
            "Client secret",
            "Client Secret of the LaunchPoint custom service.",
            secret=True,
            writeOnly=True,
        ),
        "max_calls_per_20s": setting_property(
            "integer",
            "Max calls per 20 s",
            "This connector's share of Marketo's 100 calls per 20 s, which every integration of the "
            "instance shares. Marketo recommends about half for one integration.",
            default=DEFAULT_MAX_CALLS_PER_20S,
            minimum=1,
            maximum=MARKETO_CALLS_PER_20S,
        ),
        "max_concurrent_requests": setting_property(
            "integer",
            "Max concurrent requests",
            "Calls in flight at once, out of Marketo's 10 per instance.",
            default=DEFAULT_MAX_CONCURRENT_REQUESTS,
            minimum=1,
            maximum=MARKETO_CONCURRENT_CALLS,
        ),
        "daily_call_budget": setting_property(
            ["integer", "null"],
            "Daily call budget",
            "Stop before making more than this many REST calls in one run, to leave the instance's "
            "shared daily quota to other integrations. The run then fails with a clear message "
            "(exit code 1); the tap's STATE lets the next run resume where it stopped.",
            minimum=1,
        ),
        "rate_window_seconds": setting_property(
            ["number", "null"],
            "Rate window in seconds (advanced/testing)",
            "Length of the window max_calls_per_20s applies to. Marketo's window is 20 s; change it "
            "only to match a test sandbox with a shorter window.",
            default=DEFAULT_RATE_WINDOW_SECONDS,
            exclusiveMinimum=0,
        ),
        "max_retry_seconds": setting_property(
            ["number", "null"],
            "Max retry time in seconds (advanced/testing)",
            "Total time one call may spend retrying transient errors (606, 615, 604, 5xx, timeouts) "
            "before the run fails. Default 300.",
            default=DEFAULT_MAX_RETRY_SECONDS,
            exclusiveMinimum=0,
        ),
    },
    "required": ["client_id", "client_secret"],
}
