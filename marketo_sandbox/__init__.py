"""A local emulator of the Adobe Marketo Engage REST API (Opportunities and Opportunity Roles).

Usage::

    from marketo_sandbox import Sandbox, SandboxConfig, Fault

    with Sandbox(SandboxConfig.small()) as sb:
        settings = sb.connection_settings()  # base_url, client_id, client_secret
"""

from .config import DEFAULT_CUSTOM_FIELDS, RUNTIME_FIELDS, CustomField, Fault, SandboxConfig
from .sandbox import Sandbox
from .store import Store

__all__ = [
    "DEFAULT_CUSTOM_FIELDS",
    "RUNTIME_FIELDS",
    "CustomField",
    "Fault",
    "Sandbox",
    "SandboxConfig",
    "Store",
]
