"""The ``sandbox`` and ``make_sandbox`` fixtures, loaded by tests/conftest.py (``pytest_plugins``).

They use only the sandbox's public API; marketo_sandbox/README.md shows the same two fixtures for
a project's own conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from marketo_sandbox import Sandbox, SandboxConfig


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A running sandbox with the small data set and real 100 calls / 20 s limits."""
    with Sandbox(SandboxConfig.small()) as sb:
        yield sb


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Factory: ``make_sandbox(**config_overrides)`` starts a small-data sandbox; all stop at teardown."""
    started: list[Sandbox] = []

    def factory(**overrides: Any) -> Sandbox:
        sb = Sandbox(SandboxConfig.small(**overrides)).start()
        started.append(sb)
        return sb

    yield factory
    for sb in reversed(started):
        sb.stop()
