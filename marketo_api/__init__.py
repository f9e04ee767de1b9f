"""Marketo REST API layer shared by the tap, the target and the tests (no Singer imports)."""

from typing import TYPE_CHECKING, Any

from .client import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    ClientStats,
    MarketoClient,
    Reason,
    RecordResult,
    chunked,
    encode_json,
    one_shot_encoder,
)
from .datatypes import (
    ValueTypeError,
    from_api,
    json_schema_for,
    json_schema_for_field,
    max_length,
    parse_datetime,
    to_api,
)
from .describe import FieldDescription, MarketoObject, ObjectDescription
from .errors import (
    TRANSIENT_REASON_CODES,
    CallBudgetExhaustedError,
    CrmSyncEnabledError,
    MarketoAuthenticationError,
    MarketoConnectionError,
    MarketoError,
    MarketoPermissionError,
    MarketoQuotaExceededError,
    MarketoRedirectError,
    RetriesExhaustedError,
)
from .settings import MarketoSettings, SettingsError

# Temporary (issue 11): tap_marketo_opps/tap.py and reliability/faults.py still import the Singer
# settings schema from here. Resolved lazily, so importing marketo_api imports no Singer code;
# remove once they import from marketo_singer / tap_marketo_opps.settings.
_MOVED_TO_MARKETO_SINGER = {
    "SETTINGS_JSON_SCHEMA": "marketo_singer.settings",
    "setting_property": "marketo_singer.legacy",
}

if TYPE_CHECKING:
    from marketo_singer.legacy import setting_property as setting_property
    from marketo_singer.settings import SETTINGS_JSON_SCHEMA as SETTINGS_JSON_SCHEMA
else:

    def __getattr__(name: str) -> Any:
        if name in _MOVED_TO_MARKETO_SINGER:
            import importlib

            return getattr(importlib.import_module(_MOVED_TO_MARKETO_SINGER[name]), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "TRANSIENT_REASON_CODES",
    "CallBudgetExhaustedError",
    "ClientStats",
    "CrmSyncEnabledError",
    "FieldDescription",
    "MarketoAuthenticationError",
    "MarketoClient",
    "MarketoConnectionError",
    "MarketoError",
    "MarketoObject",
    "MarketoPermissionError",
    "MarketoQuotaExceededError",
    "MarketoRedirectError",
    "MarketoSettings",
    "ObjectDescription",
    "Reason",
    "RecordResult",
    "RetriesExhaustedError",
    "SettingsError",
    "ValueTypeError",
    "chunked",
    "encode_json",
    "from_api",
    "json_schema_for",
    "json_schema_for_field",
    "max_length",
    "one_shot_encoder",
    "parse_datetime",
    "to_api",
]
