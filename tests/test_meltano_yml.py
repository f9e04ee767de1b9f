"""meltano.yml advertises exactly what the connectors accept."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from singer_sdk import Tap, Target

from tap_marketo_opps.tap import TapMarketoOpps
from target_marketo_opps.target import TargetMarketoOpps

MELTANO_YML = yaml.safe_load((Path(__file__).parent.parent / "meltano.yml").read_text())
PLUGINS = [
    ("extractors", "tap-marketo-opps", TapMarketoOpps),
    ("loaders", "target-marketo-opps", TargetMarketoOpps),
]


def plugin_entry(kind: str, name: str) -> dict[str, Any]:
    (entry,) = [p for p in MELTANO_YML["plugins"][kind] if p["name"] == name]
    return entry


def advertised_settings(cls: type[Tap | Target]) -> dict[str, Any]:
    """What `--about` lists: the connector's own settings and singer-sdk's built-ins.

    On a copy: singer-sdk adds the built-ins to the class's schema in place when a connector is
    built, so the class attribute alone depends on what ran before.
    """
    schema = copy.deepcopy(cls.config_jsonschema)
    cls.append_builtin_config(schema)
    return dict(schema["properties"])


@pytest.mark.parametrize(("kind", "name", "cls"), PLUGINS)
def test_meltano_yml_lists_exactly_the_advertised_settings(
    kind: str, name: str, cls: type[Tap | Target]
) -> None:
    declared = [s["name"] for s in plugin_entry(kind, name)["settings"]]
    assert len(declared) == len(set(declared))
    assert set(declared) == set(advertised_settings(cls))


@pytest.mark.parametrize(("kind", "name", "cls"), PLUGINS)
def test_meltano_yml_capabilities_are_the_connectors(kind: str, name: str, cls: type[Tap | Target]) -> None:
    declared = set(plugin_entry(kind, name)["capabilities"])
    assert declared == {str(c) for c in cls.capabilities}


@pytest.mark.parametrize(("kind", "name", "cls"), PLUGINS)
def test_secret_settings_are_sensitive_in_meltano_yml(kind: str, name: str, cls: type[Tap | Target]) -> None:
    secret = {k for k, v in advertised_settings(cls).items() if v.get("secret")}
    sensitive = {s["name"] for s in plugin_entry(kind, name)["settings"] if s.get("sensitive")}
    assert secret == sensitive == {"client_secret"}
