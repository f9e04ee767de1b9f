"""Temporary: the hand-written setting helper `tap_marketo_opps/tap.py` still imports.

`marketo_api` re-exports it (with SETTINGS_JSON_SCHEMA) until tap.py takes its schema from
`tap_marketo_opps.settings`; delete this module together with those re-exports.
"""

from __future__ import annotations

from typing import Any


def setting_property(json_type: Any, title: str, description: str, **extra: Any) -> dict[str, Any]:
    """One config setting in JSON Schema, with the title and description Meltano shows."""
    return {"type": json_type, "title": title, "description": description, **extra}
