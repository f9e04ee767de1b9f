"""Marketo REST API layer shared by the tap, the target and the tests (no Singer imports)."""

from .client import ClientStats, MarketoClient, Reason, RecordResult, chunked
from .datatypes import ValueTypeError, json_schema_for, json_schema_for_field
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
from .settings import SETTINGS_JSON_SCHEMA, MarketoSettings, SettingsError

__all__ = [
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
    "json_schema_for",
    "json_schema_for_field",
]
