"""What may go wrong, as the config says it: :class:`Fault` (a whole call) and :class:`RecordFault`
(single records of a write). :mod:`.faults` makes them happen."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

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
