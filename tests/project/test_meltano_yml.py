"""meltano.yml advertises exactly what the connectors accept."""

from __future__ import annotations

import copy
import enum
import json
import re
import subprocess
from typing import Any

import pytest
import yaml
from singer_sdk import Tap, Target

from tap_marketo_opps.tap import TapMarketoOpps
from tap_marketo_results.tap import TapMarketoResults
from target_marketo_opps.target import TargetMarketoOpps
from tests.support.paths import ROOT

MELTANO_YML = yaml.safe_load((ROOT / "meltano.yml").read_text())
PLUGINS = [
    ("extractors", "tap-marketo-opps", TapMarketoOpps),
    ("loaders", "target-marketo-opps", TargetMarketoOpps),
]
OWN_PLUGINS = [*PLUGINS, ("extractors", "tap-marketo-results", TapMarketoResults)]
# Plugins from PyPI, pinned in meltano.yml with their settings so that no Hub lookup is needed.
THIRD_PARTY = [
    ("extractors", "tap-postgres", "meltanolabs-tap-postgres"),
    ("loaders", "target-postgres", "meltanolabs-target-postgres"),
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


@pytest.mark.parametrize(("kind", "name", "cls"), OWN_PLUGINS)
def test_meltano_yml_lists_exactly_the_advertised_settings(
    kind: str, name: str, cls: type[Tap | Target]
) -> None:
    declared = [s["name"] for s in plugin_entry(kind, name)["settings"]]
    assert len(declared) == len(set(declared))
    assert set(declared) == set(advertised_settings(cls))


def default_of(prop: dict[str, Any]) -> Any:
    """A setting's `--about` default as meltano.yml writes it (an enum default by its value)."""
    default = prop.get("default")
    return default.value if isinstance(default, enum.Enum) else default


@pytest.mark.parametrize(("kind", "name", "cls"), OWN_PLUGINS)
def test_meltano_yml_defaults_and_descriptions_are_the_advertised_ones(
    kind: str, name: str, cls: type[Tap | Target]
) -> None:
    """`meltano config list` must tell what `--about` tells: same default, same description."""
    advertised = advertised_settings(cls)
    for setting in plugin_entry(kind, name)["settings"]:
        prop = advertised[setting["name"]]
        assert setting.get("value") == default_of(prop), setting["name"]
        assert setting.get("description") == prop.get("description"), setting["name"]


@pytest.mark.parametrize(("kind", "name", "cls"), OWN_PLUGINS)
def test_meltano_yml_capabilities_are_the_connectors(kind: str, name: str, cls: type[Tap | Target]) -> None:
    declared = set(plugin_entry(kind, name)["capabilities"])
    assert declared == {str(c) for c in cls.capabilities}


@pytest.mark.parametrize(("kind", "name", "cls"), PLUGINS)
def test_secret_settings_are_sensitive_in_meltano_yml(kind: str, name: str, cls: type[Tap | Target]) -> None:
    secret = {k for k, v in advertised_settings(cls).items() if v.get("secret")}
    sensitive = {s["name"] for s in plugin_entry(kind, name)["settings"] if s.get("sensitive")}
    assert secret == sensitive == {"client_secret"}


@pytest.mark.parametrize(("kind", "name", "distribution"), THIRD_PARTY)
def test_third_party_plugins_are_pinned_and_described_in_full(
    kind: str, name: str, distribution: str
) -> None:
    entry = plugin_entry(kind, name)
    assert re.fullmatch(rf"{distribution}==\d+\.\d+\.\d+", entry["pip_url"])
    assert entry["namespace"] == name.replace("-", "_")
    assert entry["executable"] == name
    assert "variant" not in entry  # a custom plugin: Meltano takes it as written, no Hub lookup
    assert entry["capabilities"]
    assert entry["settings"]


@pytest.mark.e2e
@pytest.mark.parametrize(("kind", "name", "distribution"), THIRD_PARTY)
def test_third_party_settings_are_what_the_installed_plugin_advertises(
    kind: str, name: str, distribution: str
) -> None:
    """Against the plugin `make meltano` installed from the pinned pip_url."""
    executable = ROOT / ".meltano" / kind / name / "venv" / "bin" / name
    if not executable.exists():
        pytest.fail(f"{executable} is missing: run `make meltano` (make test does)")
    about = json.loads(
        subprocess.run(
            [str(executable), "--about", "--format", "json"], capture_output=True, check=True, text=True
        ).stdout
    )
    entry = plugin_entry(kind, name)
    assert entry["pip_url"] == f"{distribution}=={about['version']}"
    assert set(entry["capabilities"]) == set(about["capabilities"])
    properties = about["settings"]["properties"]
    assert [s["name"] for s in entry["settings"]] == list(properties)
    secret = {key for key, value in properties.items() if value.get("secret")}
    assert {s["name"] for s in entry["settings"] if s.get("sensitive")} == secret
