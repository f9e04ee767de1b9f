"""Keep the READMEs' settings tables and loader snippet in step with the code.

The settings tables are generated from each plugin's `--about --format=markdown`, and the
target README's `meltano.yml` snippet is copied from `meltano.yml`, so neither can drift from
what the connectors accept. Each generated block sits between markers such as
`<!-- settings:start -->` and `<!-- settings:end -->`.

    python -m scripts.docs_settings           # exit 1 with a diff if a README is out of step
    python -m scripts.docs_settings --write   # rewrite the blocks
"""

from __future__ import annotations

import argparse
import difflib
import functools
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plugin:
    """A console script of this project and the README that documents its settings."""

    executable: str
    module: str
    readme: str


PLUGINS = (
    Plugin("tap-marketo-opps", "tap_marketo_opps", "tap_marketo_opps/README.md"),
    Plugin("target-marketo-opps", "target_marketo_opps", "target_marketo_opps/README.md"),
    Plugin("tap-marketo-results", "tap_marketo_results", "tap_marketo_results/README.md"),
)
LOADER = "target-marketo-opps"
LOADER_README = "target_marketo_opps/README.md"


class DocsError(Exception):
    """A README or an `--about` output that lacks what the generator needs."""


@functools.cache
def about_markdown(plugin: Plugin) -> str:
    """`<plugin> --about --format=markdown`, in a subprocess.

    Not in-process: singer-sdk adds its built-in settings to the class's schema in place, which
    would change what the rest of a test session sees.
    """
    script = Path(sys.executable).parent / plugin.executable
    command = [str(script)] if script.exists() else [sys.executable, "-m", plugin.module]
    result = subprocess.run(
        [*command, "--about", "--format=markdown"], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise DocsError(f"{plugin.executable} --about failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def settings_table(markdown: str) -> str:
    """The table under `## Settings` of an `--about --format=markdown` output, names as code."""
    lines = markdown.splitlines()
    try:
        start = lines.index("## Settings")
    except ValueError:
        raise DocsError("the --about output has no '## Settings' section") from None
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if not table:
        raise DocsError("the --about output's '## Settings' section has no table")
    return "\n".join(table[:2] + [_code_first_cell(row) for row in table[2:]])


def _code_first_cell(row: str) -> str:
    """The setting name as code: `stream_maps.__else__` would otherwise render as bold "else"."""
    cells = row.split("|")
    cells[1] = f" `{cells[1].strip()}` "
    return "|".join(cells)


def indented_preamble_lines(markdown: str) -> list[str]:
    """Lines before the first `## ` heading that start with white space.

    Markdown renders a line indented by four spaces as a code block, so a plugin's description
    written as an indented docstring would show as code.
    """
    found = []
    for line in markdown.splitlines():
        if line.startswith("## "):
            break
        if line.strip() and line[0] in " \t":
            found.append(line)
    return found


def loader_snippet(meltano_yml: str, name: str = LOADER) -> str:
    """The `loaders:` entry of `name`, exactly as `meltano.yml` writes it, as a fenced block."""
    lines = meltano_yml.splitlines()
    try:
        start = lines.index(f"  - name: {name}")
    except ValueError:
        raise DocsError(f"meltano.yml has no plugin entry '  - name: {name}'") from None
    end = start + 1
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    return "\n".join(["```yaml", "  loaders:", *lines[start:end], "```"])


def replace_block(text: str, marker: str, body: str, *, where: str = "README") -> str:
    """`text` with what lies between `<!-- marker:start -->` and `<!-- marker:end -->` set to `body`."""
    pattern = re.compile(
        rf"(<!-- {re.escape(marker)}:start -->\n)(.*?)(<!-- {re.escape(marker)}:end -->)", re.DOTALL
    )
    matches = pattern.findall(text)
    if len(matches) != 1:
        raise DocsError(
            f"{where}: expected one <!-- {marker}:start --> ... <!-- {marker}:end --> block, "
            f"found {len(matches)}"
        )
    # Blank lines around the body, so that Markdown ends the table or fence before the end marker.
    return pattern.sub(lambda m: m.group(1) + "\n" + body + "\n\n" + m.group(3), text)


def expected_texts(readmes: Mapping[str, str], abouts: Mapping[str, str], meltano_yml: str) -> dict[str, str]:
    """What each README should read, given the current texts, `--about` outputs and meltano.yml."""
    expected = dict(readmes)
    for plugin in PLUGINS:
        table = settings_table(abouts[plugin.executable])
        expected[plugin.readme] = replace_block(
            expected[plugin.readme], "settings", table, where=plugin.readme
        )
    expected[LOADER_README] = replace_block(
        expected[LOADER_README], "meltano-loader", loader_snippet(meltano_yml), where=LOADER_README
    )
    return expected


def differences(current: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    """A unified diff per README whose text differs from what it should read."""
    diffs = []
    for name, want in expected.items():
        have = current[name]
        if have != want:
            diff = difflib.unified_diff(
                have.splitlines(keepends=True),
                want.splitlines(keepends=True),
                fromfile=f"{name} (as is)",
                tofile=f"{name} (from --about / meltano.yml)",
            )
            diffs.append("".join(diff))
    return diffs


def read_inputs(root: Path) -> tuple[dict[str, str], dict[str, str], str]:
    """The READMEs under `root`, the plugins' `--about` outputs and `root`'s meltano.yml."""
    readmes = {p.readme: (root / p.readme).read_text(encoding="utf-8") for p in PLUGINS}
    abouts = {p.executable: about_markdown(p) for p in PLUGINS}
    return readmes, abouts, (root / "meltano.yml").read_text(encoding="utf-8")


def main(argv: Sequence[str] | None = None, *, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="rewrite the generated blocks in the READMEs")
    args = parser.parse_args(argv)
    readmes, abouts, meltano_yml = read_inputs(root)
    expected = expected_texts(readmes, abouts, meltano_yml)
    if args.write:
        for name, text in expected.items():
            if text != readmes[name]:
                (root / name).write_text(text, encoding="utf-8")
                print(f"rewrote {name}")
        return 0
    diffs = differences(readmes, expected)
    for diff in diffs:
        sys.stdout.write(diff)
    if diffs:
        print(
            "README settings out of step with --about / meltano.yml: "
            "run `python -m scripts.docs_settings --write`"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
