"""The `updatedAt` bookmark's second: which records at it a run need not emit again.

The bookmark is inclusive (records updated at or after it are emitted) because Marketo's
`updatedAt` has whole seconds: a record changed again within the bookmark's second, after the
run that set the bookmark read it, would be lost by a strict `>`. An inclusive bookmark alone
re-emits the bookmark second's records every run, so a finished run also stores, for that
second only, each such record's `marketoGUID` with a digest of its emitted values
(`bookmarks.<stream>.at_bookmark`). The next run skips a record only when its `updatedAt` is
that second *and* its digest is the stored one, i.e. it is exactly the record already emitted.
Any change gives another digest and is emitted; a record missing from the set is emitted again
(a duplicate, never a loss).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

AT_BOOKMARK = "at_bookmark"  # stream state: the records emitted at the bookmark's second
BOOKMARK = "replication_key_value"  # the SDK's key of the bookmark in a stream's state


class BookmarkSecond:
    """The records at the newest `updatedAt` second of a run, and those its predecessor saved.

    `saved` is the `at_bookmark` state of the run that set the current bookmark: {"updatedAt": the
    bookmark, "records": {marketoGUID: digest}}. `seen` tells whether a record is exactly one of
    those (same second as the bookmark `since`, same digest of every emitted value) and tracks the newest
    second up to `limit` (the signpost, which caps the next bookmark) for `state_for`.
    """

    def __init__(
        self, *, since: dt.datetime | None, saved: Mapping[str, Any] | None, limit: dt.datetime | None
    ) -> None:
        self._since = since
        records = saved.get("records") if saved else None
        self._saved: Mapping[str, str] = records if isinstance(records, Mapping) else {}
        self._limit = limit
        self._at: dt.datetime | None = None
        self._records: dict[str, str] = {}

    @classmethod
    def for_run(
        cls, stream_state: Mapping[str, Any], *, since: dt.datetime | None, signpost: str | None
    ) -> BookmarkSecond:
        """The tracker of a run that filters by `since`, given the state the previous run left."""
        saved = stream_state.get(AT_BOOKMARK)
        bookmark = stream_state.get(BOOKMARK)
        # Only the set saved with this very bookmark, and only when the run filters by it.
        usable = (
            isinstance(saved, Mapping)
            and same_moment(saved.get("updatedAt"), bookmark)
            and since is not None
            and same_moment(bookmark, since.isoformat())
        )
        return cls(
            since=since,
            saved=saved if usable else None,
            limit=parse_moment(signpost) if signpost else None,
        )

    def seen(self, moment: dt.datetime, record: Mapping[str, Any]) -> bool:
        """Whether `record` (updated at `moment`, not before `since`) was emitted by the saving run."""
        guid = record.get("marketoGUID")
        if not isinstance(guid, str):
            return False
        if self._limit is not None and moment > self._limit:
            return False  # cannot be the next bookmark's second
        if self._at is not None and moment < self._at:
            # Older than the newest second so far: not tracked; skippable only at the saved second.
            return moment == self._since and self._saved.get(guid) == _digest(record)
        digest = _digest(record)
        if self._at is None or moment > self._at:
            self._at, self._records = moment, {}
        self._records[guid] = digest
        return moment == self._since and self._saved.get(guid) == digest

    def state_for(self, bookmark: Any) -> dict[str, Any] | None:
        """The `at_bookmark` state for the promoted bookmark, or None if this run saw no record at it."""
        if self._at is None or bookmark is None or not same_moment(self._at.isoformat(), bookmark):
            return None
        return {"updatedAt": bookmark, "records": dict(sorted(self._records.items()))}


def _digest(record: Mapping[str, Any]) -> str:
    """A digest of every emitted value (128 bits: a collision would skip a changed record)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def same_moment(left: Any, right: Any) -> bool:
    """Two ISO timestamps name the same instant (they may differ in form, e.g. Z and +00:00)."""
    if not isinstance(left, str) or not isinstance(right, str):
        return False
    try:
        return parse_moment(left) == parse_moment(right)
    except ValueError:
        return False


def parse_moment(text: str) -> dt.datetime:
    """An ISO timestamp as an aware datetime; one without an offset is UTC."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
