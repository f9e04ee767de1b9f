"""Singer-side pieces the tap and the target share (the Marketo API layer has no Singer imports)."""

from .config import ConnectorConfigValidation
from .settings import (
    CONNECTION_SETTINGS,
    SETTINGS_JSON_SCHEMA,
    SettingsList,
    config_schema,
    connection_errors,
    redact_secrets,
    schema_errors,
)

__all__ = [
    "CONNECTION_SETTINGS",
    "SETTINGS_JSON_SCHEMA",
    "ConnectorConfigValidation",
    "SettingsList",
    "config_schema",
    "connection_errors",
    "redact_secrets",
    "schema_errors",
]
