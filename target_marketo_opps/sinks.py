"""One sink per stream; they only validate and hand records to the target's shared coordinator."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from singer_sdk.sinks import Sink

from .validation import RecordValidator

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if TYPE_CHECKING:
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from .target import TargetMarketoOpps

# singer-sdk strips these from records unless add_record_metadata is on; `_sdc_deleted_at` is kept
# because it marks a delete.
_SDC_DROPPED = (
    "_sdc_extracted_at",
    "_sdc_received_at",
    "_sdc_batched_at",
    "_sdc_sequence",
    "_sdc_table_version",
    "_sdc_sync_started_at",
)


class MarketoSink(Sink):
    """Routes one stream's records to Opportunities or Opportunity Roles.

    Batching, ordering across streams and sending live in the target's coordinator, so the SDK's
    own size-triggered drains are switched off (`is_full` is always False); `process_batch`
    (called by `drain_all`: end of input, the 5-minute record age, a signal) sends everything.
    """

    def __init__(
        self,
        target: TargetMarketoOpps,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        self._marketo_target = target
        self._record_validator: RecordValidator | None = None
        self._schema_error: str | None = None
        super().__init__(target, stream_name, schema, key_properties)
        self.marketo_object = target.object_for_stream(stream_name)
        if self.validate_schema:
            self._record_validator = RecordValidator(self.schema, stream_name=stream_name)

    @override
    def get_validator(self) -> BaseJSONSchemaValidator | None:
        # Validation happens in `_validate_and_parse` with a compiled validator that reports
        # instead of aborting the run.
        return None

    @property
    @override
    def is_full(self) -> bool:
        return False

    @override
    def _validate_and_parse(self, record: dict) -> dict:
        # Replaces singer-sdk's jsonschema validation (which raises InvalidRecord and stops the
        # run) and its date parsing (values stay as sent; `to_api` converts them per dataType).
        validator = self._record_validator
        self._schema_error = validator.error(record) if validator is not None else None
        return record

    @override
    def _singer_validate_message(self, record: dict) -> None:
        # singer-sdk aborts the run when a record lacks a Singer key property. Marketo's keys
        # are what matter here (dedupe fields, or marketoGUID alone for updateOnly/idField and
        # deletes), and a record without them is rejected on its own by the payload builder.
        return

    @override
    def _remove_sdc_metadata_from_record(self, record: dict) -> None:
        for name in _SDC_DROPPED:
            record.pop(name, None)

    @override
    def process_record(self, record: dict, context: dict) -> None:
        error, self._schema_error = self._schema_error, None
        self._marketo_target.accept_record(self.stream_name, self.marketo_object, record, error)

    @override
    def process_batch(self, context: dict) -> None:
        self._marketo_target.flush_all()


class DiscardSink(Sink):
    """For a stream the `stream_maps` setting removes entirely (`"<stream>": "__NULL__"`).

    No record ever reaches it; it exists because singer-sdk builds a sink for every SCHEMA.
    """

    @override
    def get_validator(self) -> BaseJSONSchemaValidator | None:
        return None

    @override
    def process_record(self, record: dict, context: dict) -> None:
        return

    @override
    def process_batch(self, context: dict) -> None:
        return
