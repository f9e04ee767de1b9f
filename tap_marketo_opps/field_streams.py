"""The field-metadata streams: what Marketo says about each field of the two objects."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Stream
from singer_sdk.helpers.types import Context, Record

from marketo_api import CallBudgetExhaustedError, MarketoObject, MarketoQuotaExceededError

from .schemas import OPPORTUNITY_FIELDS_SCHEMA, ROLE_FIELDS_SCHEMA, field_record

if TYPE_CHECKING:
    from .tap import TapMarketoOpps


class _FieldsStream(Stream):
    """Field metadata of one object; FULL_TABLE."""

    primary_keys: ClassVar[list[str]] = ["name"]
    marketo_object: ClassVar[MarketoObject]
    fields_schema: ClassVar[dict[str, Any]]

    def __init__(self, tap: TapMarketoOpps) -> None:
        super().__init__(tap, schema=self.fields_schema, name=self.marketo_object.fields_stream_name)
        self._owner = tap

    def get_records(self, context: Context | None) -> Iterable[Record]:
        try:
            yield from self._records()
        except (MarketoQuotaExceededError, CallBudgetExhaustedError) as exc:
            message = f"Stopped early while reading {self.name}: {exc}. Run the tap again to finish."
            raise self._owner.stopped(self.logger, message) from exc

    def _records(self) -> Iterator[Record]:
        raise NotImplementedError


class OpportunityFieldsStream(_FieldsStream):
    """One record per opportunity field: /opportunities/schema/fields.json plus describe flags."""

    marketo_object = MarketoObject.OPPORTUNITY
    fields_schema = OPPORTUNITY_FIELDS_SCHEMA

    def _records(self) -> Iterator[Record]:
        description = self._owner.describe(self.marketo_object)
        listed: set[str] = set()
        for page in self._owner.marketo.opportunity_fields():
            self._owner.count_field_pages(1)
            for raw in page:
                name = str(raw.get("name"))
                if name in listed:
                    continue
                listed.add(name)
                yield field_record(description, name, raw, with_schema_api=True)
        for described in description.fields:
            if described.name not in listed:
                yield field_record(description, described.name, None, with_schema_api=True)


class OpportunityRoleFieldsStream(_FieldsStream):
    """One record per opportunity role field, from the roles describe (roles have no schema API)."""

    marketo_object = MarketoObject.OPPORTUNITY_ROLE
    fields_schema = ROLE_FIELDS_SCHEMA

    def _records(self) -> Iterator[Record]:
        description = self._owner.describe(self.marketo_object)
        for described in description.fields:
            yield field_record(description, described.name, None, with_schema_api=False)
