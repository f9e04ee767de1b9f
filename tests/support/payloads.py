"""A PayloadBuilder for the sandbox's opportunity and role descriptions, with no Marketo behind it."""

from __future__ import annotations

import logging

from marketo_api import MarketoObject, ObjectDescription
from marketo_sandbox import DEFAULT_CUSTOM_FIELDS
from marketo_sandbox.schema import opportunity_schema, role_schema
from target_marketo_opps.payloads import PayloadBuilder

OPPORTUNITY = ObjectDescription.from_api(opportunity_schema(list(DEFAULT_CUSTOM_FIELDS)).describe())
ROLE = ObjectDescription.from_api(role_schema().describe())
LOGGER = logging.getLogger("test-target")


def builder(
    obj: MarketoObject = MarketoObject.OPPORTUNITY, *, action: str = "createOrUpdate", **kw: object
) -> PayloadBuilder:
    description = OPPORTUNITY if obj is MarketoObject.OPPORTUNITY else ROLE
    return PayloadBuilder(
        obj,
        description,
        action=action,
        dedupe_by=str(kw.get("dedupe_by", "dedupeFields")),
        max_body_bytes=int(kw.get("max_body_bytes", 1024 * 1024)),  # type: ignore[call-overload]
        logger=LOGGER,
    )
