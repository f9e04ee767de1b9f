"""The connection settings both connectors advertise, declared with singer-sdk's typing helpers.

Each rule about a setting lives in one place:

- type, range, enum, required and default: the `th.Property` declarations here and in the
  connectors' `settings` modules; singer-sdk checks them (and fills the defaults) before anything
  else runs, and `schema_errors` checks them again for a config read without a connector;
- what JSON Schema cannot say about the connection (`base_url` or `munchkin_id`, https off
  loopback, non-empty credentials): `MarketoSettings.from_config`, reported by `connection_errors`;
- what it cannot say about a connector's own settings: that connector's `config_errors`.

The numbers themselves (Marketo's limits, the defaults) are `marketo_api.settings` constants,
which `MarketoSettings` also enforces for Python callers that build it without a Singer config.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from singer_sdk import typing as th

from marketo_api.settings import (
    DEFAULT_MAX_CALLS_PER_20S,
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_RETRY_SECONDS,
    DEFAULT_RATE_WINDOW_SECONDS,
    MARKETO_CALLS_PER_20S,
    MARKETO_CONCURRENT_CALLS,
    MarketoSettings,
    SettingsError,
)


class SettingsList(th.PropertiesList):
    """`th.PropertiesList` in which `nullable=False` keeps an optional setting non-null.

    singer-sdk 0.54's `Property.to_dict` appends "null" to the type of every optional property,
    so its helpers cannot say "may be left out, may not be null" (`"type": "integer"` with a
    default). These settings said that before the helpers declared them, and null stays refused.
    Nested properties are left as singer-sdk makes them.
    """

    @property
    def type_dict(self) -> dict:
        schema = super().type_dict
        for name, prop in self.items():
            if prop.optional and prop.nullable is False:
                declared = schema["properties"][name]
                types = declared["type"] if isinstance(declared["type"], list) else [declared["type"]]
                declared["type"] = [kind for kind in types if kind != "null"]
        return schema


CONNECTION_SETTINGS = SettingsList(
    th.Property(
        "base_url",
        th.StringType,
        title="Base URL",
        description="Instance root, e.g. https://123-ABC-456.mktorest.com (the REST endpoint shown under "
        "Admin > Web Services, with or without /rest). Either this or munchkin_id.",
    ),
    th.Property(
        "munchkin_id",
        th.StringType,
        title="Munchkin ID",
        description="Instance id such as 123-ABC-456; used to build base_url when base_url is not set.",
    ),
    th.Property(
        "client_id",
        th.StringType,
        required=True,
        title="Client ID",
        description="Client Id of the LaunchPoint custom service.",
    ),
    th.Property(
        "client_secret",
        th.StringType,
        required=True,
        secret=True,
        title="Client secret",
        description="Client Secret of the LaunchPoint custom service.",
    ),
    th.Property(
        "max_calls_per_20s",
        th.IntegerType(minimum=1, maximum=MARKETO_CALLS_PER_20S),
        default=DEFAULT_MAX_CALLS_PER_20S,
        nullable=False,
        title="Max calls per 20 s",
        description="This connector's share of Marketo's 100 calls per 20 s, which every integration of "
        "the instance shares. Marketo recommends about half for one integration.",
    ),
    th.Property(
        "max_concurrent_requests",
        th.IntegerType(minimum=1, maximum=MARKETO_CONCURRENT_CALLS),
        default=DEFAULT_MAX_CONCURRENT_REQUESTS,
        nullable=False,
        title="Max concurrent requests",
        description="Calls in flight at once, out of Marketo's 10 per instance.",
    ),
    th.Property(
        "daily_call_budget",
        th.IntegerType(minimum=1),
        title="Daily call budget",
        description="Stop before making more than this many REST calls in one run, to leave the "
        "instance's shared daily quota to other integrations. The run then fails with a clear message "
        "(exit code 1); the tap's STATE lets the next run resume where it stopped.",
    ),
    th.Property(
        "rate_window_seconds",
        th.DecimalType(exclusive_minimum=0),
        default=DEFAULT_RATE_WINDOW_SECONDS,
        title="Rate window in seconds (advanced/testing)",
        description="Length of the window max_calls_per_20s applies to. Marketo's window is 20 s; change "
        "it only to match a test sandbox with a shorter window.",
    ),
    th.Property(
        "max_retry_seconds",
        th.DecimalType(exclusive_minimum=0),
        default=DEFAULT_MAX_RETRY_SECONDS,
        title="Max retry time in seconds (advanced/testing)",
        description="Total time one call may spend retrying transient errors (606, 615, 604, 5xx, "
        "timeouts) before the run fails. Default 300.",
    ),
)

#: The connection settings alone, as JSON Schema (for reading; connectors use `config_schema`).
SETTINGS_JSON_SCHEMA: dict[str, Any] = CONNECTION_SETTINGS.to_dict()


def config_schema(own: th.PropertiesList) -> dict[str, Any]:
    """A connector's `config_jsonschema`: the connection settings, then its own ones.

    A new dict on every call: singer-sdk adds its built-in settings to a connector's schema in
    place, and fills defaults (such as `{}`) into configs from it.
    """
    clashes = sorted({p.name for p in CONNECTION_SETTINGS} & {p.name for p in own})
    if clashes:
        raise ValueError(f"settings declared twice: {', '.join(clashes)}")
    return copy.deepcopy(SettingsList(*CONNECTION_SETTINGS, *own).to_dict())


def schema_errors(schema: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """What `schema` refuses in `config`, worded as singer-sdk words it, secrets redacted.

    The same check singer-sdk runs when a connector starts (without filling defaults), for a
    config read without one (the target's typed settings, tests).
    """
    validator = th.DEFAULT_JSONSCHEMA_VALIDATOR(dict(schema))
    messages = []
    for error in validator.iter_errors(dict(config)):
        where = f" in config[{']['.join(repr(index) for index in error.path)}]" if error.path else ""
        messages.append(f"{error.message}{where}")
    return redact_secrets(messages, config, schema)


def connection_errors(config: Mapping[str, Any]) -> list[str]:
    """What `MarketoSettings.from_config` refuses in `config` (at most one message)."""
    try:
        MarketoSettings.from_config(config)
    except SettingsError as exc:
        return [str(exc)]
    return []


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
