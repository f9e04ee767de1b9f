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


@pytest.mark.parametrize(("kind", "name", "cls"), PLUGINS)
def test_every_connector_setting_is_in_meltano_yml(kind: str, name: str, cls: type[Tap | Target]) -> None:
    declared = {s["name"] for s in plugin_entry(kind, name)["settings"]}
    own = set(cls.config_jsonschema["properties"])
    assert own - declared == set()


@pytest.mark.parametrize(("kind", "name", "cls"), PLUGINS)
def test_meltano_yml_names_no_setting_the_connector_lacks(
    kind: str, name: str, cls: type[Tap | Target]
) -> None:
    declared = {s["name"] for s in plugin_entry(kind, name)["settings"]}
    schema = copy.deepcopy(cls.config_jsonschema)
    cls.append_builtin_config(schema)  # what --about advertises: own and singer-sdk settings
    accepted = set(schema["properties"])
    assert declared - accepted == set()


@pytest.mark.parametrize(("kind", "name", "cls"), PLUGINS)
def test_meltano_yml_capabilities_are_the_connectors(kind: str, name: str, cls: type[Tap | Target]) -> None:
    declared = set(plugin_entry(kind, name)["capabilities"])
    assert declared == {str(c) for c in cls.capabilities}


@pytest.mark.parametrize(("kind", "name", "cls"), PLUGINS)
def test_secret_settings_are_sensitive_in_meltano_yml(kind: str, name: str, cls: type[Tap | Target]) -> None:
    secret = {k for k, v in cls.config_jsonschema["properties"].items() if v.get("secret")}
    sensitive = {s["name"] for s in plugin_entry(kind, name)["settings"] if s.get("sensitive")}
    assert secret == sensitive == {"client_secret"}
