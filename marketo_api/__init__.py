"""Marketo REST API layer shared by the tap, the target and the tests (no Singer imports)."""

from .client import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    ClientStats,
    MarketoClient,
    Reason,
    RecordResult,
    chunked,
    encode_json,
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
    MarketoError,
    MarketoPermissionError,
    MarketoQuotaExceededError,
    RetriesExhaustedError,
)
from .settings import SETTINGS_JSON_SCHEMA, MarketoSettings, SettingsError, redact_secrets, setting_property

__all__ = [
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "SETTINGS_JSON_SCHEMA",
    "TRANSIENT_REASON_CODES",
    "CallBudgetExhaustedError",
    "ClientStats",
    "CrmSyncEnabledError",
    "FieldDescription",
    "MarketoAuthenticationError",
    "MarketoClient",
    "MarketoError",
    "MarketoObject",
    "MarketoPermissionError",
    "MarketoQuotaExceededError",
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
    "parse_datetime",
    "redact_secrets",
    "setting_property",
    "to_api",
]
