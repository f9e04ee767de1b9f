"""Configuration objects for the Marketo sandbox: custom fields and the sandbox config.

The fault objects live in :mod:`.fault_specs` and are importable from here too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .fault_specs import (
    FAULT_KINDS,
    RECORD_FAULT_MESSAGES,
    RECORD_FAULT_OBJECTS,
    WRITE_ONLY_FAULT_KINDS,
    Fault,
    RecordFault,
)

__all__ = [
    "DEFAULT_CUSTOM_FIELDS",
    "FAULT_KINDS",
    "KNOWN_DATA_TYPES",
    "LEGACY_PARAM_AUTH_MODES",
    "MISSING_OPPORTUNITY_ANSWERS",
    "QUERY_FIELDS_ADDED",
    "RECORD_FAULT_MESSAGES",
    "RECORD_FAULT_OBJECTS",
    "RUNTIME_FIELDS",
    "SALES_PERSON_CHECKS",
    "VARIANT_ENV",
    "WRITE_ONLY_FAULT_KINDS",
    "CustomField",
    "Fault",
    "RecordFault",
    "SandboxConfig",
]

#: Every ``dataType`` the sandbox knows how to validate and format.
KNOWN_DATA_TYPES = frozenset(
    {
        "string",
        "text",
        "integer",
        "float",
        "currency",
        "percent",
        "score",
        "boolean",
        "date",
        "datetime",
        "email",
        "phone",
        "url",
        "reference",
    }
)

#: What the sandbox answers for a role whose opportunity does not exist, by
#: :attr:`SandboxConfig.missing_opportunity_code`. Marketo's docs do not say (see README):
#: 1004 is its "not found" for sync, 1013 its "Object not found", 1003 its "invalid data".
MISSING_OPPORTUNITY_ANSWERS = {
    "1004": "Opportunity '{ext}' not found",
    "1013": "Object not found",
    "1003": "Invalid value for field 'externalOpportunityId': '{ext}'",
}

#: Values of :attr:`SandboxConfig.legacy_param_auth`: what a REST call with an ``access_token``
#: query parameter (or ``_method=GET`` form field) gets. Marketo announced the parameter's removal.
LEGACY_PARAM_AUTH_MODES = frozenset({"refused", "ignored", "accepted"})

#: Values of :attr:`SandboxConfig.query_fields_added`: what a query with ``fields`` returns besides
#: the requested fields and ``seq``. The spec requires ``marketoGUID`` on every result.
QUERY_FIELDS_ADDED = {
    "idField": ("idField",),
    "keys": ("idField", "dedupeFields"),
    "defaults": ("idField", "dedupeFields", "createdAt", "updatedAt"),
}

#: Values of :attr:`SandboxConfig.sales_person_check` (``None``: not checked). The docs list 718
#: "ExternalSalesPersonID not found" without saying whether it is response- or record-level.
SALES_PERSON_CHECKS = frozenset({"response", "record"})

#: Environment variable whose JSON object changes the defaults of :meth:`SandboxConfig.small`.
VARIANT_ENV = "MARKETO_SANDBOX_VARIANT"


@dataclass(frozen=True)
class CustomField:
    """A custom opportunity field.

    ``data_type`` is a Marketo ``dataType``; an unknown one (for example ``"formula"``) is accepted,
    described as given and treated as an opaque scalar. Marketo only lists string and integer custom
    fields in ``searchableFields``, so ``searchable=True`` is only allowed for those two types.
    """

    name: str
    data_type: str
    length: int | None = None
    searchable: bool = False
    updateable: bool = True
    display_name: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.name):
            raise ValueError(f"invalid custom field name {self.name!r}")
        if self.searchable and self.data_type not in ("string", "integer"):
            raise ValueError(f"custom field {self.name!r}: only string and integer fields can be searchable")
        if self.length is not None and self.length < 1:
            raise ValueError(f"custom field {self.name!r}: length must be positive")


DEFAULT_CUSTOM_FIELDS: list[CustomField] = [
    CustomField("region", "string", 50, searchable=True),
    CustomField("partnerTier", "integer", searchable=True),
    CustomField("discountRate", "float"),
    CustomField("contactEmail", "email", 255),
    CustomField("contactPhone", "phone", 255),
    CustomField("contractUrl", "url", 255),
    CustomField("internalNotes", "text"),
    CustomField("healthScore", "score"),
    CustomField("winRate", "percent"),
    CustomField("parentOpportunityId", "reference", 50),
    CustomField("renewalDate", "date"),
    CustomField("lastReviewedAt", "datetime"),
    CustomField("isStrategic", "boolean"),
    CustomField("listPrice", "currency"),
    CustomField("legacyFormula", "formula", updateable=False),
]


def _default_custom_fields() -> list[CustomField]:
    return list(DEFAULT_CUSTOM_FIELDS)


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes one sandbox: credentials, the data set, limits and behaviour.

    Limits set to ``None`` are disabled. Fields in :data:`RUNTIME_FIELDS` can be changed on a
    running sandbox with ``Sandbox.configure``; the data-set fields are fixed at start.
    """

    client_id: str = "test-client"
    client_secret: str = "test-secret"  # noqa: S105 (a test credential)
    host: str = "127.0.0.1"
    port: int = 0
    # data set (deterministic for a given seed)
    seed: int = 7
    leads: int = 200
    opportunities: int = 100
    roles_per_opportunity: int = 3
    heavy_leads: int = 1
    heavy_lead_roles: int = 350
    include_doc_examples: bool = True
    # externalSalesPersonId as a reference to known sales persons (the seeded SP-nn): an unknown one
    # gets 718 at response level ("response") or per record ("record"); None: a plain string.
    sales_person_check: str | None = None
    custom_fields: list[CustomField] = field(default_factory=_default_custom_fields)
    # An SQLite file to keep the store in (its sandbox tables are replaced at start); None: memory.
    store_file: str | None = None
    # limits
    rate_limit: int | None = 100
    rate_window_seconds: float = 20.0
    concurrency_limit: int | None = 10
    daily_quota: int | None = None
    max_uri_bytes: int | None = 8192
    max_body_bytes: int | None = 1_048_576
    token_ttl_seconds: float = 3600.0
    latency_seconds: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    record_faults: list[RecordFault] = field(default_factory=list)
    # behaviour
    crm_sync: bool = False
    # The skip code of a role whose opportunity does not exist (one of MISSING_OPPORTUNITY_ANSWERS).
    missing_opportunity_code: str = "1004"
    emit_more_result: bool = True
    trailing_empty_page: bool = False
    gzip: bool = True
    # Unverified Marketo behaviours a connector may depend on; the defaults are the strictest.
    filter_case_sensitive: bool = True  # False: string filter values match case-insensitively
    filter_values_trimmed: bool = False  # True: whitespace around the commas of filterValues is dropped
    legacy_param_auth: str = "refused"  # or "ignored" (beside a valid header) or "accepted"
    query_fields_added: str = "idField"  # or "keys" or "defaults" (see QUERY_FIELDS_ADDED)
    # Every member the spec marks required, even where the docs' examples leave it out (errors and
    # warnings on success, result on failure, describe's apiName/pluralName/..., description "").
    spec_complete: bool = False

    def __post_init__(self) -> None:
        for name in ("leads", "opportunities", "roles_per_opportunity", "heavy_leads", "heavy_lead_roles"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.rate_window_seconds <= 0:
            raise ValueError("rate_window_seconds must be positive")
        if self.token_ttl_seconds <= 0:
            raise ValueError("token_ttl_seconds must be positive")
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must not be negative")
        if self.missing_opportunity_code not in MISSING_OPPORTUNITY_ANSWERS:
            raise ValueError(
                f"missing_opportunity_code must be one of {sorted(MISSING_OPPORTUNITY_ANSWERS)}, "
                f"not {self.missing_opportunity_code!r}"
            )
        choices = (
            ("legacy_param_auth", LEGACY_PARAM_AUTH_MODES),
            ("query_fields_added", QUERY_FIELDS_ADDED),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {sorted(allowed)}, not {getattr(self, name)!r}")
        if self.sales_person_check is not None and self.sales_person_check not in SALES_PERSON_CHECKS:
            raise ValueError(
                f"sales_person_check must be None or one of {sorted(SALES_PERSON_CHECKS)}, "
                f"not {self.sales_person_check!r}"
            )
        faults = [f if isinstance(f, Fault) else Fault(**f) for f in self.faults]
        object.__setattr__(self, "faults", faults)
        record_faults = [f if isinstance(f, RecordFault) else RecordFault(**f) for f in self.record_faults]
        object.__setattr__(self, "record_faults", record_faults)
        names = [c.name for c in self.custom_fields]
        if len(set(names)) != len(names):
            raise ValueError("custom field names must be unique")

    @classmethod
    def small(cls, **overrides: Any) -> SandboxConfig:
        """The small data set used by the ``sandbox`` pytest fixture (real 100/20 s limits).

        ``MARKETO_SANDBOX_VARIANT`` (a JSON object of fields, e.g. ``{"filter_case_sensitive":
        false}``) changes the defaults, so a whole test suite can run under another plausible
        Marketo; ``overrides`` still win.
        """
        values: dict[str, Any] = {
            "leads": 60,
            "opportunities": 40,
            "roles_per_opportunity": 3,
            "heavy_leads": 1,
        }
        variant = os.environ.get(VARIANT_ENV, "").strip()
        if variant:
            parsed = json.loads(variant)
            if not isinstance(parsed, dict):
                raise ValueError(f"{VARIANT_ENV} must be a JSON object of SandboxConfig fields")
            values.update(parsed)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> SandboxConfig:
        return dataclasses.replace(self, **changes)

    def public_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data, with the client secret masked."""
        data = dataclasses.asdict(self)
        data["client_secret"] = "***"  # noqa: S105
        return data


#: Fields that ``Sandbox.configure`` and ``POST /_sandbox/config`` may change on a running sandbox.
RUNTIME_FIELDS = frozenset(
    {
        "client_id",
        "client_secret",
        "rate_limit",
        "rate_window_seconds",
        "concurrency_limit",
        "daily_quota",
        "max_uri_bytes",
        "max_body_bytes",
        "token_ttl_seconds",
        "latency_seconds",
        "faults",
        "record_faults",
        "crm_sync",
        "missing_opportunity_code",
        "emit_more_result",
        "trailing_empty_page",
        "gzip",
        "filter_case_sensitive",
        "filter_values_trimmed",
        "legacy_param_auth",
        "query_fields_added",
        "spec_complete",
    }
)
