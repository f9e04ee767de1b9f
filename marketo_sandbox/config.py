"""Configuration objects for the Marketo sandbox: custom fields, faults and the sandbox config."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

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

#: Fault kinds accepted by :class:`Fault`.
FAULT_KINDS = frozenset(
    {
        "603",
        "606",
        "615",
        "604",
        "608",
        "611",
        "614",
        "713",
        "http500",
        "http502",
        "http503",
        "drop",
        "slow",
        "late",
    }
)

#: Fault kinds that only apply to write (sync and delete) calls.
WRITE_ONLY_FAULT_KINDS = frozenset({"late"})

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

#: Record-level transient skip reasons :class:`RecordFault` can inject, with Marketo's messages.
RECORD_FAULT_MESSAGES = {
    "1014": "Failed to create Object",
    "1019": "Import in progress",
    "1022": "Object in use",
    "1029": "Too many jobs in queue",
}

#: Values of :attr:`RecordFault.object`.
RECORD_FAULT_OBJECTS = frozenset({"opportunity", "opportunity_role"})

_RECORD_FAULT_SUFFIXES = (
    ("object", re.compile(r"/(opportunity|opportunity_role)$")),
    ("rate", re.compile(r":(\d+(?:\.\d*)?|\.\d+)$")),
    ("times", re.compile(r"x(\d+|\*)$")),
)


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


@dataclass(frozen=True)
class Fault:
    """An injected failure.

    * ``kind``: a Marketo error code ("603", "606", "615", "604", "608", "611", "614", "713"), an HTTP
      error with an HTML body ("http500", "http502", "http503"), "drop" (close the connection
      without answering), "slow" (sleep ``seconds`` and then answer normally) or "late" (write
      calls only: close the connection without answering and without applying the write, then
      apply it ``seconds`` later, as a Marketo that went on with a request its client gave up on).
    * ``calls``: 1-based numbers of REST calls (identity excluded) since start or ``reset_stats``.
    * ``rate``: probability per matching call, drawn from ``random.Random(config.seed)``.
    * neither ``calls`` nor ``rate``: every matching call.
    * ``path``: only calls whose URL path starts with this prefix.
    * ``after_apply``: only sync/delete calls; the write is applied first, then the fault is
      answered (the "outcome unknown" case).
    """

    kind: str
    rate: float | None = None
    calls: list[int] | None = None
    path: str | None = None
    after_apply: bool = False
    seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        if self.calls is not None:
            object.__setattr__(self, "calls", [int(c) for c in self.calls])
        if self.after_apply and self.kind in ("slow", "late"):
            raise ValueError(f"after_apply makes no sense for a {self.kind!r} fault")
        if self.seconds < 0:
            raise ValueError("fault seconds must not be negative")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Parse the CLI form ``KIND:RATE`` or ``KIND@3,7`` (a ``+after`` suffix sets after_apply).

        A ``~SECONDS`` suffix sets ``seconds`` (for "slow" and "late"), e.g. ``late@2~3``.
        """
        text = spec.strip()
        seconds = cls.seconds
        if "~" in text:
            text, _, delay = text.rpartition("~")
            seconds = float(delay)
        after = False
        if text.endswith("+after"):
            after = True
            text = text[: -len("+after")]
        if "@" in text:
            kind, _, calls = text.partition("@")
            numbers = [int(c) for c in calls.split(",") if c.strip()]
            if not numbers:
                raise ValueError(f"fault {spec!r}: no call numbers after '@'")
            return cls(kind=kind, calls=numbers, after_apply=after, seconds=seconds)
        if ":" in text:
            kind, _, rate = text.partition(":")
            return cls(kind=kind, rate=float(rate), after_apply=after, seconds=seconds)
        return cls(kind=text, after_apply=after, seconds=seconds)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RecordFault:
    """A record-level transient skip in sync and delete calls.

    A matching record is not applied; its result is ``{"seq": i, "status": "skipped",
    "reasons": [{"code": code, "message": <Marketo's message>}]}``. Other records of the call are
    applied normally.

    * ``code``: "1014", "1019", "1022" or "1029" (see :data:`RECORD_FAULT_MESSAGES`).
    * ``keys``: the records it applies to, by ``externalOpportunityId`` (an opportunity, or every
      role of that opportunity) or by ``marketoGUID`` (the only key idField-mode input carries);
      ``None`` means every record.
    * ``times``: how often one record is skipped before it goes through, counted per record
      identity (an opportunity's ``externalOpportunityId``; a role's ``externalOpportunityId``,
      ``leadId`` and ``role``; the ``marketoGUID`` in idField mode); ``None`` means forever.
    * ``rate``: probability that a matching record (with ``times`` left) is skipped, drawn from
      ``random.Random(config.seed)``; ``None`` means always.
    * ``object``: "opportunity", "opportunity_role" or ``None`` (both).
    """

    code: str = "1014"
    keys: list[str] | None = None
    times: int | None = 1
    rate: float | None = None
    object: str | None = None

    def __post_init__(self) -> None:
        if self.code not in RECORD_FAULT_MESSAGES:
            raise ValueError(
                f"unknown record fault code {self.code!r}; expected one of {sorted(RECORD_FAULT_MESSAGES)}"
            )
        if self.keys is not None:
            if isinstance(self.keys, str) or not isinstance(self.keys, list | tuple):
                raise ValueError("record fault keys must be a list of strings (or None for every record)")
            if not self.keys:
                raise ValueError("record fault keys must not be empty; use None for every record")
            object.__setattr__(self, "keys", [str(k) for k in self.keys])
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1
        ):
            raise ValueError("record fault times must be a positive integer (or None for always)")
        if self.rate is not None and (
            isinstance(self.rate, bool)
            or not isinstance(self.rate, int | float)
            or not 0.0 <= self.rate <= 1.0
        ):
            raise ValueError("record fault rate must be between 0 and 1")
        if self.object is not None and self.object not in RECORD_FAULT_OBJECTS:
            raise ValueError(
                f"unknown record fault object {self.object!r}; expected one of {sorted(RECORD_FAULT_OBJECTS)}"
            )

    @property
    def message(self) -> str:
        return RECORD_FAULT_MESSAGES[self.code]

    @classmethod
    def parse(cls, spec: str) -> RecordFault:
        """Parse the CLI form ``CODE[@KEY,KEY...]`` plus optional suffixes, in any order.

        Suffixes: ``xN`` (times; ``x*`` means forever), ``:RATE`` and ``/opportunity`` or
        ``/opportunity_role``. For example ``1014@OPP-1,OPP-2x2`` or ``1022:0.1x*/opportunity_role``.
        """
        text = spec.strip()
        found: dict[str, str] = {}
        stripped = True
        while stripped:
            stripped = False
            for name, pattern in _RECORD_FAULT_SUFFIXES:
                match = pattern.search(text)
                if name not in found and match:
                    found[name] = match.group(1)
                    text = text[: match.start()]
                    stripped = True
        code, at, key_text = text.partition("@")
        keys: list[str] | None = None
        if at:
            keys = [k.strip() for k in key_text.split(",") if k.strip()]
            if not keys:
                raise ValueError(f"record fault {spec!r}: no keys after '@'")
        times_text = found.get("times", "1")
        return cls(
            code=code.strip(),
            keys=keys,
            times=None if times_text == "*" else int(times_text),
            rate=float(found["rate"]) if "rate" in found else None,
            object=found.get("object"),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
