"""The READMEs say what the code does: settings tables, the loader snippet, `--about`, resume notes."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import yaml

from marketo_sandbox import Sandbox, SandboxConfig
from scripts import docs_settings
from scripts.docs_settings import PLUGINS, Plugin
from tap_marketo_opps.streams import RESUME_NOTE
from tap_marketo_opps.testing import run_tap
from tests.support.paths import ROOT


def test_readmes_settings_tables_and_loader_snippet_are_in_step() -> None:
    readmes, abouts, meltano_yml = docs_settings.read_inputs(ROOT)
    diffs = docs_settings.differences(readmes, docs_settings.expected_texts(readmes, abouts, meltano_yml))
    assert not diffs, "run `python -m scripts.docs_settings --write`:\n" + "\n".join(diffs)


def test_check_reports_a_readme_whose_table_differs_from_about(tmp_path: Path) -> None:
    for name in [p.readme for p in PLUGINS] + ["meltano.yml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    readme = tmp_path / "target_marketo_opps/README.md"
    text = readme.read_text()
    row = "| `max_rejections` | False | 0 |"
    assert row in text
    readme.write_text(text.replace(row, "| `max_rejections` | False | 10 |"))

    assert docs_settings.main([], root=tmp_path) == 1
    assert docs_settings.main(["--write"], root=tmp_path) == 0
    assert readme.read_text() == text
    assert docs_settings.main([], root=tmp_path) == 0


def test_check_reports_a_loader_snippet_that_differs_from_meltano_yml() -> None:
    readmes, abouts, meltano_yml = docs_settings.read_inputs(ROOT)
    changed = meltano_yml.replace("value: createOrUpdate", "value: createOnly", 1)
    assert changed != meltano_yml
    diffs = docs_settings.differences(readmes, docs_settings.expected_texts(readmes, abouts, changed))
    assert len(diffs) == 1
    assert "+      value: createOnly" in diffs[0]


def test_target_readme_loader_snippet_parses_to_meltano_yml_loader_entry() -> None:
    readme = (ROOT / "target_marketo_opps/README.md").read_text()
    block = readme.split("<!-- meltano-loader:start -->")[1].split("<!-- meltano-loader:end -->")[0]
    snippet = block.strip().removeprefix("```yaml").removesuffix("```")
    (entry,) = yaml.safe_load(snippet)["loaders"]
    loaders = yaml.safe_load((ROOT / "meltano.yml").read_text())["plugins"]["loaders"]
    assert entry == next(p for p in loaders if p["name"] == "target-marketo-opps")


def test_a_readme_without_markers_is_an_error_not_a_silent_pass() -> None:
    with pytest.raises(docs_settings.DocsError, match="settings:start"):
        docs_settings.replace_block("# README without markers\n", "settings", "| table |")


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.executable)
def test_about_markdown_does_not_start_with_indented_lines(plugin: Plugin) -> None:
    markdown = docs_settings.about_markdown(plugin)
    assert markdown.startswith(f"# `{plugin.executable}`")
    assert docs_settings.indented_preamble_lines(markdown) == []


def test_indented_description_is_found() -> None:
    markdown = "# `x`\n\nOne line.\n\n        An indented docstring line.\n\n## Settings\n\n    code\n"
    assert docs_settings.indented_preamble_lines(markdown) == ["        An indented docstring line."]


def test_tap_does_not_say_progress_is_unresumable(caplog: pytest.LogCaptureFixture) -> None:
    """Its runs resume from the key-batch checkpoint; the SDK's generic warning would say otherwise."""
    with Sandbox(SandboxConfig.small(rate_window_seconds=1.0)) as sb, caplog.at_level(logging.INFO):
        run = run_tap(
            {
                **sb.connection_settings(),
                "rate_window_seconds": 1.0,
                "lead_id_range": {"start": 1, "end": 900},
            }
        )
    assert run.error is None
    assert run.records("opportunity_roles")
    assert not [r for r in caplog.records if "not resumable" in r.getMessage()]
    notes = [
        state["bookmarks"][stream]["progress_markers"]["Note"]
        for state in run.states
        for stream in ("opportunities", "opportunity_roles")
        if "progress_markers" in state.get("bookmarks", {}).get(stream, {})
    ]
    assert notes
    assert set(notes) == {RESUME_NOTE}
