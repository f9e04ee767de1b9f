"""A local emulator of the Adobe Marketo Engage REST API (Opportunities and Opportunity Roles).

Usage::

    from marketo_sandbox import Sandbox, SandboxConfig, Fault, RecordFault

    with Sandbox(SandboxConfig.small()) as sb:
        settings = sb.connection_settings()  # base_url, client_id, client_secret
"""

from .config import (
    DEFAULT_CUSTOM_FIELDS,
    RECORD_FAULT_MESSAGES,
    RUNTIME_FIELDS,
    CustomField,
    Fault,
    RecordFault,
    SandboxConfig,
)
from .sandbox import Sandbox
from .store import Store

__all__ = [
    "DEFAULT_CUSTOM_FIELDS",
    "RECORD_FAULT_MESSAGES",
    "RUNTIME_FIELDS",
    "CustomField",
    "Fault",
    "RecordFault",
    "Sandbox",
    "SandboxConfig",
    "Store",
]
