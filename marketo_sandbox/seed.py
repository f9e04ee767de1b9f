"""Deterministic seed data: leads, opportunities and opportunity roles.

Everything comes from ``random.Random(config.seed)``; nothing depends on the wall clock.
Timestamps fall between 2024-01-01 and 2026-06-30 (UTC). The generator is written for speed
(a million roles build in a few seconds): plain dicts, shared strings, precomputed day strings.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from .config import CustomField, SandboxConfig
from .store import Record, guid_from_int

DOC_LEAD_IDS = (1, 1872, 273891, 456783, 456784)

ROLE_NAMES = ["Decision Maker", "Technical Buyer", "Economic Buyer", "Champion", "Influencer", "End User"]
EXTRA_ROLE_NAMES = [
    "Executive Sponsor",
    "Approver",
    "Procurement",
    "Legal",
    "Evaluator",
    "Advisor",
    "Coach",
    "Gatekeeper",
    "Budget Holder",
    "Project Manager",
    "Architect",
    "Security Reviewer",
]

COMPANY_PREFIXES = [
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Hooli", "Vandelay", "Soylent",
    "Tyrell", "Cyberdyne", "Aperture", "Oscorp", "Pied Piper", "Massive Dynamic", "Nakatomi", "Monarch",
    "Vehement", "Big Dog", "Blue Sun", "Northwind", "Contoso", "Fabrikam", "Tailspin",
]  # fmt: skip
COMPANY_SUFFIXES = ["Corp", "Industries", "Labs", "Systems", "Holdings", "Group", "Partners", "Logistics"]
PRODUCTS = [
    "Analytics Suite", "Cloud Migration", "Support Renewal", "Data Platform", "Security Bundle",
    "Office Chairs", "Consulting Hours", "Training Package", "API Add-on", "Enterprise License",
    "Starter Plan", "Hardware Refresh", "Day Care Expansion", "Marketing Automation",
]  # fmt: skip
# (stage, probability, forecastCategory, forecastCategoryName)
STAGES = [
    ("Prospecting", 10, "Pipeline", "Pipeline"),
    ("Qualification", 10, "Pipeline", "Pipeline"),
    ("Needs Analysis", 20, "Pipeline", "Pipeline"),
    ("Value Proposition", 50, "Pipeline", "Pipeline"),
    ("Id. Decision Makers", 60, "Pipeline", "Pipeline"),
    ("Perception Analysis", 70, "Pipeline", "Pipeline"),
    ("Proposal/Price Quote", 75, "BestCase", "Best Case"),
    ("Negotiation/Review", 90, "Forecast", "Commit"),
    ("Closed Won", 100, "Closed", "Closed"),
    ("Closed Lost", 0, "Omitted", "Omitted"),
]
TYPES = ["New Business", "Existing Business - Upgrade", "Existing Business - Renewal", "Existing Business"]
LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Trade Show", "Webinar", "Advertisement", "Other"]
SOURCES = ["Inbound Sales Call/Email", "Email", "Web Form", "Partner", "Event", "Outbound"]
NEXT_STEPS = ["Send proposal", "Schedule demo", "Legal review", "Security questionnaire", "Executive call"]
REGIONS = ["NA", "EMEA", "APAC", "LATAM"]
NOTES = [
    "Customer asked for a multi-year discount.",
    "Champion is moving teams; find a new sponsor.",
    "Procurement requires three quotes.\nFollow up in Q3.",
    "Budget approved — waiting on signature.",
    'Mentioned competitor "Globex" in the last call.',
]

_EPOCH_DAY0 = date(2023, 12, 1)
_DAY0_TS = int(datetime(2023, 12, 1, tzinfo=timezone.utc).timestamp())
_DAYS = [(_EPOCH_DAY0 + timedelta(days=i)).isoformat() for i in range(365 * 5)]
RANGE_START = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())
RANGE_END = int(datetime(2026, 6, 30, 23, 59, 59, tzinfo=timezone.utc).timestamp())
_SPAN = RANGE_END - RANGE_START


_CLOCK = [f"T{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)]


def fmt_datetime(ts: int) -> str:
    d, rem = divmod(ts - _DAY0_TS, 86400)
    return _DAYS[d] + _CLOCK[rem]


def fmt_date(ts: int) -> str:
    return _DAYS[(ts - _DAY0_TS) // 86400]


def company_name(index: int) -> str:
    p = COMPANY_PREFIXES[index % len(COMPANY_PREFIXES)]
    rest = index // len(COMPANY_PREFIXES)
    s = COMPANY_SUFFIXES[rest % len(COMPANY_SUFFIXES)]
    generation = rest // len(COMPANY_SUFFIXES)
    return f"{p} {s}" if generation == 0 else f"{p} {s} {generation + 1}"


def heavy_role_name(round_no: int) -> str:
    names = ROLE_NAMES + EXTRA_ROLE_NAMES
    return names[round_no] if round_no < len(names) else f"Stakeholder {round_no - len(names) + 1}"


def _cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


Ctx = dict[str, Any]
Gen = Callable[[random.Random, int, Ctx], Any]


def _generic_generator(cf: CustomField) -> Gen:
    name, dt, length = cf.name, cf.data_type, cf.length

    def clip(text: str) -> str:
        return text[:length] if length else text

    if dt in ("string", "reference", "text"):
        return lambda rng, i, ctx: clip(f"{name}-{i}")
    if dt in ("integer", "score", "percent"):
        return lambda rng, i, ctx: int(rng.random() * 101)
    if dt == "float":
        return lambda rng, i, ctx: round(rng.random() * 1000, 3)
    if dt == "currency":
        return lambda rng, i, ctx: _cents(int(rng.random() * 10_000_000))
    if dt == "boolean":
        return lambda rng, i, ctx: rng.random() < 0.5
    if dt == "date":
        return lambda rng, i, ctx: fmt_date(RANGE_START + int(rng.random() * _SPAN))
    if dt == "datetime":
        return lambda rng, i, ctx: fmt_datetime(RANGE_START + int(rng.random() * _SPAN))
    if dt == "email":
        return lambda rng, i, ctx: clip(f"{name.lower()}{i}@example.com")
    if dt == "phone":
        return lambda rng, i, ctx: f"+1-555-{int(rng.random() * 10000):04d}"
    if dt == "url":
        return lambda rng, i, ctx: clip(f"https://example.com/{name}/{i}")
    return lambda rng, i, ctx: f"{name}:{i}"


def _default_generators() -> dict[str, Gen]:
    def email(rng: random.Random, i: int, ctx: Ctx) -> str:
        slug = ctx["company"].lower().replace(" ", "")
        return f"buyer{i}@{slug}.example.com"

    def parent(rng: random.Random, i: int, ctx: Ctx) -> str | None:
        return f"OPP-{int(rng.random() * (i - 1)) + 1:06d}" if i > 1 and rng.random() < 0.2 else None

    return {
        "region": lambda rng, i, ctx: REGIONS[int(rng.random() * 4)],
        "partnerTier": lambda rng, i, ctx: int(rng.random() * 4) + 1,
        "discountRate": lambda rng, i, ctx: round(rng.random() * 0.35, 4),
        "contactEmail": email,
        "contactPhone": lambda rng, i, ctx: (
            f"+1-555-{int(rng.random() * 900) + 100}-{int(rng.random() * 10000):04d}"
        ),
        "contractUrl": lambda rng, i, ctx: f"https://contracts.example.com/OPP-{i:06d}",
        "internalNotes": lambda rng, i, ctx: (
            NOTES[int(rng.random() * len(NOTES))] if rng.random() < 0.5 else None
        ),
        "healthScore": lambda rng, i, ctx: int(rng.random() * 101),
        "winRate": lambda rng, i, ctx: int(rng.random() * 101),
        "parentOpportunityId": parent,
        "renewalDate": lambda rng, i, ctx: fmt_date(RANGE_START + int(rng.random() * _SPAN)),
        "lastReviewedAt": lambda rng, i, ctx: ctx["updatedAt"],
        "isStrategic": lambda rng, i, ctx: rng.random() < 0.15,
        "listPrice": lambda rng, i, ctx: ctx["listPrice"],
        "legacyFormula": lambda rng, i, ctx: f"{ctx['stage']}|{ctx['type']}",
    }


def _doc_examples(rng: random.Random) -> tuple[list[Record], list[Record]]:
    def guid() -> str:
        return guid_from_int(rng.getrandbits(128))

    created, updated = "2024-01-02T09:15:00Z", "2024-01-03T16:40:12Z"
    opps: list[Record] = [
        {
            "marketoGUID": "dff23271-f996-47d7-984f-f2676861b5fa",
            "externalOpportunityId": "19UYA31581L000000",
            "name": "Chairs",
            "description": "Chairs",
            "amount": "1604.47",
            "source": "Inbound Sales Call/Email",
            "createdAt": created,
            "updatedAt": updated,
        },
        {
            "marketoGUID": "dff23271-f996-47d7-984f-f2676861b5fc",
            "externalOpportunityId": "29UYA31581L000000",
            "name": "Big Dog Day Care-Phase12",
            "description": "Big Dog Day Care-Phase12",
            "amount": "1604.47",
            "source": "Email",
            "createdAt": created,
            "updatedAt": updated,
        },
    ]
    for n in (1, 2, 3):
        opps.append(
            {
                "marketoGUID": guid(),
                "externalOpportunityId": f"Opportunity{n}",
                "name": f"Opportunity{n}",
                "createdAt": created,
                "updatedAt": updated,
            }
        )
    roles: list[Record] = []
    for ext, lead, role, primary in (
        ("Opportunity1", 1, "Captain", True),
        ("Opportunity2", 1872, "Commander", True),
        ("Opportunity3", 273891, "Lieutenant Commander", True),
        ("19UYA31581L000000", 456783, "Technical Buyer", False),
    ):
        roles.append(
            {
                "marketoGUID": guid(),
                "externalOpportunityId": ext,
                "leadId": lead,
                "role": role,
                "isPrimary": primary,
                "createdAt": created,
                "updatedAt": updated,
            }
        )
    return opps, roles


def build(cfg: SandboxConfig) -> tuple[list[int], list[Record], list[Record]]:
    """Return (lead ids, opportunities, roles) for the config's data-set fields."""
    rng = random.Random(cfg.seed)
    r = rng.random
    bits = rng.getrandbits
    leads = list(range(1, cfg.leads + 1))
    opps: list[Record] = []
    roles: list[Record] = []
    if cfg.include_doc_examples:
        doc_opps, doc_roles = _doc_examples(rng)
        opps.extend(doc_opps)
        roles.extend(doc_roles)
        present = set(leads)
        leads.extend(i for i in DOC_LEAD_IDS if i not in present)

    n_opps = cfg.opportunities
    n_companies = max(1, n_opps // 5)
    n_sales = max(1, min(99, n_opps // 10 + 1))
    company_names = [company_name(c) for c in range(n_companies)]
    company_ids = [f"CMP-{c + 1:04d}" for c in range(n_companies)]
    sales_ids = [f"SP-{s + 1:02d}" for s in range(n_sales)]
    defaults = _default_generators()
    customs: list[tuple[str, Gen]] = [
        (cf.name, defaults.get(cf.name) or _generic_generator(cf)) for cf in cfg.custom_fields
    ]
    n_stages, n_products, n_types = len(STAGES), len(PRODUCTS), len(TYPES)
    n_lsrc, n_src, n_next = len(LEAD_SOURCES), len(SOURCES), len(NEXT_STEPS)

    generated: list[Record] = []
    for i in range(1, n_opps + 1):
        c = int(r() * n_companies)
        company = company_names[c]
        stage, prob, fcat, fcat_name = STAGES[int(r() * n_stages)]
        created_ts = RANGE_START + int(r() * _SPAN)
        updated_ts = created_ts + int(r() * (RANGE_END - created_ts))
        ext_created_ts = max(RANGE_START, created_ts - int(r() * 30 * 86400))
        close_ts = created_ts + int(r() * 180 * 86400)
        close_date = fmt_date(close_ts)
        cents = 50_000 + int(r() * 49_950_000)
        created_at = fmt_datetime(created_ts)
        updated_at = fmt_datetime(updated_ts)
        opp_type = TYPES[int(r() * n_types)]
        rec: Record = {
            "marketoGUID": guid_from_int(bits(128)),
            "externalOpportunityId": f"OPP-{i:06d}",
            "name": f"{company} - {PRODUCTS[int(r() * n_products)]}",
        }
        if r() < 0.8:
            rec["description"] = f"{opp_type} opportunity with {company}"
        rec["type"] = opp_type
        rec["stage"] = stage
        rec["amount"] = _cents(cents)
        rec["expectedRevenue"] = _cents(cents * prob // 100)
        rec["closeDate"] = close_date
        rec["isClosed"] = stage.startswith("Closed")
        rec["isWon"] = stage == "Closed Won"
        rec["probability"] = prob
        rec["quantity"] = round(1 + r() * 499, 2)
        rec["fiscalQuarter"] = (int(close_date[5:7]) - 1) // 3 + 1
        rec["fiscalYear"] = int(close_date[:4])
        rec["forecastCategory"] = fcat
        rec["forecastCategoryName"] = fcat_name
        rec["leadSource"] = LEAD_SOURCES[int(r() * n_lsrc)]
        if r() < 0.7:
            rec["nextStep"] = NEXT_STEPS[int(r() * n_next)]
        rec["source"] = SOURCES[int(r() * n_src)]
        rec["lastActivityDate"] = fmt_date(created_ts + int(r() * (updated_ts - created_ts + 1)))
        rec["externalCompanyId"] = company_ids[c]
        rec["externalSalesPersonId"] = sales_ids[int(r() * n_sales)]
        rec["externalCreatedDate"] = fmt_datetime(ext_created_ts)
        rec["createdAt"] = created_at
        rec["updatedAt"] = updated_at
        ctx: Ctx = {
            "company": company,
            "stage": stage,
            "type": opp_type,
            "updatedAt": updated_at,
            "listPrice": _cents(cents + int(r() * cents * 0.3)),
        }
        for name, gen in customs:
            value = gen(rng, i, ctx)
            if value is not None:
                rec[name] = value
        generated.append(rec)
    opps.extend(generated)

    # Normal roles: 0..2k per opportunity among the non-heavy leads.
    n_heavy = min(cfg.heavy_leads, cfg.leads)
    n_normal = cfg.leads - n_heavy
    k2 = 2 * cfg.roles_per_opportunity
    n_role_names = len(ROLE_NAMES)
    if n_normal > 0 and k2 > 0:
        for rec in generated:
            count = int(r() * (k2 + 1))
            if not count:
                continue
            ext = rec["externalOpportunityId"]
            ext_created = rec["externalCreatedDate"]
            created_at, updated_at = rec["createdAt"], rec["updatedAt"]
            used: set[tuple[int, str]] = set()
            first = True
            for _ in range(count):
                for _attempt in range(3):
                    lead = 1 + int(r() * n_normal)
                    role = ROLE_NAMES[int(r() * n_role_names)]
                    if (lead, role) not in used:
                        break
                else:
                    continue
                used.add((lead, role))
                roles.append(
                    {
                        "marketoGUID": guid_from_int(bits(128)),
                        "externalOpportunityId": ext,
                        "leadId": lead,
                        "role": role,
                        "isPrimary": first,
                        "externalCreatedDate": ext_created,
                        "createdAt": created_at,
                        "updatedAt": updated_at if r() < 0.5 else created_at,
                    }
                )
                first = False

    # Heavy leads: heavy_lead_roles roles each, cycling over every opportunity, one role name per
    # round, so (opportunity, lead, role) stays unique.
    if n_opps > 0:
        for h in range(n_heavy):
            lead = cfg.leads - h
            start = int(r() * n_opps)
            for j in range(cfg.heavy_lead_roles):
                rec = generated[(start + j) % n_opps]
                roles.append(
                    {
                        "marketoGUID": guid_from_int(bits(128)),
                        "externalOpportunityId": rec["externalOpportunityId"],
                        "leadId": lead,
                        "role": heavy_role_name(j // n_opps),
                        "isPrimary": False,
                        "externalCreatedDate": rec["externalCreatedDate"],
                        "createdAt": rec["createdAt"],
                        "updatedAt": rec["updatedAt"],
                    }
                )
    return leads, opps, roles
