"""The tap's settings: its key sources and options, after the connection settings it shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from marketo_api import MAX_BATCH
from marketo_singer import SettingsList, config_schema, connection_errors, schema_errors

from .keys import FILTER_OBJECTS, key_sources

_KEY_FILE_HELP = (
    "One value a line, or a CSV file (comma, tab, semicolon or pipe) with a header row; the key "
    "column is the one named {columns} (case, '_' and '-' are ignored; a one-column file may start "
    "with such a header line). Read line by line, so a file of millions of values works with "
    "constant memory. A relative path is relative to the working directory."
)

TAP_SETTINGS = SettingsList(
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description="Emit only records whose updatedAt is at or after this time (ISO 8601). Marketo has "
        "no updatedAt filter, so every key is still queried; older records are dropped by the tap. "
        "Later runs use the saved updatedAt bookmark when it is newer.",
    ),
    th.Property(
        "external_opportunity_ids",
        th.ArrayType(th.StringType),
        title="External opportunity IDs",
        description="Read these opportunities (by externalOpportunityId) and their roles.",
    ),
    th.Property(
        "external_opportunity_ids_file",
        th.StringType,
        title="External opportunity IDs file",
        description="Path of a file of externalOpportunityIds; like external_opportunity_ids. "
        + _KEY_FILE_HELP.format(columns="externalOpportunityId, opportunityId or id"),
    ),
    th.Property(
        "lead_ids",
        th.ArrayType(th.IntegerType),
        title="Lead IDs",
        description=f"Read the roles of these leads (by leadId, {MAX_BATCH} leads a query) and every "
        "opportunity they name (each fetched once per run).",
    ),
    th.Property(
        "lead_ids_file",
        th.StringType,
        title="Lead IDs file",
        description="Path of a file of lead ids; like lead_ids. "
        + _KEY_FILE_HELP.format(columns="leadId, lead or id"),
    ),
    th.Property(
        "lead_id_range",
        th.ObjectType(
            th.Property(
                "start", th.IntegerType, required=True, title="First lead ID", description="First lead id."
            ),
            th.Property(
                "end",
                th.IntegerType,
                required=True,
                title="Last lead ID",
                description="Last lead id (inclusive).",
            ),
            additional_properties=None,  # as before: not stated (JSON Schema's default allows them)
        ),
        title="Lead ID range",
        description="Like lead_ids, for every id from start to end inclusive, "
        'e.g. {"start": 1, "end": 250000}.',
    ),
    th.Property(
        "filters",
        th.ArrayType(
            th.ObjectType(
                th.Property(
                    "object",
                    th.StringType,
                    required=True,
                    allowed_values=list(FILTER_OBJECTS),
                    title="Object",
                    description="opportunity or opportunity_role.",
                ),
                th.Property(
                    "field",
                    th.StringType,
                    required=True,
                    title="Field",
                    description="A searchable field of the object (its describe's searchableFields).",
                ),
                th.Property(
                    "values",
                    # singer-sdk's helpers have no "string or integer" type but AnyOf, whose anyOf
                    # form would change jsonschema's messages; the type list is kept as it was.
                    # ArrayType has no minItems either: Property passes it through as a keyword.
                    th.ArrayType(th.CustomType({"type": ["string", "integer"]})),
                    required=True,
                    title="Values",
                    description="Exact values to match.",
                    minItems=1,
                ),
                additional_properties=None,
            )
        ),
        title="Filters",
        description="More key sources on other searchable fields: a list of {object, field, values}, "
        "where object is opportunity or opportunity_role and field a searchable field of it (e.g. "
        "externalCompanyId, externalSalesPersonId or a searchable custom field). Matching "
        "opportunities come with their roles; matching roles with their opportunities.",
    ),
    th.Property(
        "progress_log_batches",
        th.IntegerType(minimum=1),
        default=10,
        nullable=False,
        title="Progress log interval (batches)",
        description="Log progress (batches done, records, calls, calls per minute, time left) every this "
        "many key batches.",
    ),
)


def config_jsonschema() -> dict[str, Any]:
    """The tap's `config_jsonschema`: the connection settings, then the tap's own (a new dict)."""
    return config_schema(TAP_SETTINGS)


_SCHEMA = config_jsonschema()  # for config_errors only; never handed to singer-sdk


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """Every problem with a tap config, each naming its setting.

    What the JSON Schema refuses (singer-sdk refuses it before the tap asks, so there this part
    finds nothing); on a config it accepts, what it cannot express: the connection settings
    (`MarketoSettings.from_config`) and the key sources, whose files are not opened here. Those
    read the values as the schema types them, so they wait for a config of the right types.
    """
    errors = schema_errors(_SCHEMA, config)
    if errors:
        return errors
    errors = connection_errors(config)
    try:
        key_sources(config, check_files=False)
    except ConfigValidationError as exc:
        errors.extend(exc.errors or [str(exc)])
    return errors
