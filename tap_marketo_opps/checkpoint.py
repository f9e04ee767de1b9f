"""Where a stopped run resumes: `bookmarks.key_batches.checkpoint`.

The driver passes a batch to the checkpoint only once every selected child has emitted its
records, and only `BatchResult.complete_through` (the last batch none of whose follow-up ids
still wait in the pipeline's pool): STATE therefore never runs ahead of emitted records. A
stopped run (kill, quota 607, daily_call_budget) resumes after the checkpoint without calling
Marketo for the batches before it; a finished run clears it, so the next run starts over.
The checkpoint carries a fingerprint of everything that decides what a batch emits (the keys,
selected fields, start_date, the bookmarks); if any of it changed, the run starts over.

The children keep the SDK's own `updatedAt` bookmark (one per stream). It is unsorted, so the
SDK holds the running maximum in progress markers and promotes it only when the whole run
ends; an unfinished run leaves the previous bookmark in place, which is what its resumption
must filter with. The signpost (the cap of the promoted bookmark) is the start time of the
*first* run of a resumed sequence, `started_at` here: records updated after that moment in
batches already done would otherwise be skipped forever.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from marketo_api import MarketoObject

from .bookmark import BOOKMARK

CHECKPOINT = "checkpoint"
CHECKPOINT_VERSION = 1


def fingerprint(
    sources: Sequence[tuple[str, int, str]],
    requested: Mapping[MarketoObject, tuple[str, ...]],
    *,
    start_date: Any,
    bookmarks: Mapping[str, Any],
) -> str:
    """Everything that decides a batch's records, hashed: when it differs, the checkpoint is stale.

    `sources` holds (name, key count, digest of the keys) per key source.
    """
    # These names are hashed: renaming one would make every saved checkpoint look stale.
    parts = {
        "version": CHECKPOINT_VERSION,
        "sources": [list(source) for source in sources],
        "opportunity_fields": requested.get(MarketoObject.OPPORTUNITY),
        "role_fields": requested.get(MarketoObject.OPPORTUNITY_ROLE),
        "start_date": start_date,
        "bookmarks": {
            obj.stream_name: bookmarks.get(obj.stream_name, {}).get(BOOKMARK) for obj in MarketoObject
        },
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Checkpoint:
    """This run's checkpoint, in the state of `key_batches`; every change is written as a STATE.

    `enabled` is False for a connection test (`--test`), which stops after a batch and must not
    leave a checkpoint behind; it still resumes from one.
    """

    def __init__(
        self,
        state: dict[str, Any],
        write_state: Callable[[], None],
        logger: logging.Logger,
        *,
        sources: Sequence[str],
        fingerprint: str,
        run_started: float,
        enabled: bool,
    ) -> None:
        self._state = state
        self._write_state = write_state
        self._logger = logger
        self._sources = sources
        self._fingerprint = fingerprint
        self._enabled = enabled
        self._resume = self._resume_point()
        #: The start of the first run of a resumed sequence: the signpost of the bookmarks.
        self.started_at: str = self._resume["started_at"] if self._resume else _seconds_iso(run_started)
        #: Batches of the current key source that the last STATE holds as done.
        self.done = 0

    def begin(self, index: int) -> int | None:
        """How many batches of key source `index` are done already; None when all of them are."""
        first = self._resume["source_index"] if self._resume else 0
        if index < first:
            return None
        self.done = self._resume["batches_done"] if self._resume and index == first else 0
        return self.done

    def batch_done(self, index: int, complete_through: int) -> None:
        """The children have emitted a batch of source `index`: move on if it completes more."""
        if self._enabled and complete_through > self.done:
            self._save(index, complete_through)
            self.done = complete_through

    def source_done(self, index: int) -> None:
        if self._enabled:
            self._save(index + 1, 0)

    def finish(self) -> None:
        """Every key source is done: the next run starts over."""
        if self._enabled:
            self._state.pop(CHECKPOINT, None)
            self._write_state()
            self._logger.info("All key sources finished; the next run starts from the first batch again")

    def _resume_point(self) -> Mapping[str, Any] | None:
        checkpoint = self._state.get(CHECKPOINT)
        if not isinstance(checkpoint, Mapping):
            return None
        if checkpoint.get("fingerprint") != self._fingerprint:
            self._logger.warning(
                "State holds a checkpoint of a stopped run, but the key sources, selected fields, "
                "start_date or bookmarks differ now; starting from the first batch"
            )
            return None
        self._logger.info(
            "Resuming the run started at %s: key source %s, after batch %s",
            checkpoint.get("started_at"),
            checkpoint.get("source"),
            checkpoint.get("batches_done"),
        )
        return checkpoint

    def _save(self, source_index: int, batches_done: int) -> None:
        # One assignment of a new dict, so a STATE written by a signal handler sees old or new.
        self._state[CHECKPOINT] = {
            "fingerprint": self._fingerprint,
            "started_at": self.started_at,
            "source_index": source_index,
            "source": self._sources[source_index] if source_index < len(self._sources) else None,
            "batches_done": batches_done,
        }
        self._write_state()


def _seconds_iso(epoch_seconds: float) -> str:
    """UTC ISO timestamp to the second, in the same form as coerced Marketo datetimes."""
    moment = dt.datetime.fromtimestamp(int(epoch_seconds), tz=dt.timezone.utc)
    return moment.isoformat()
