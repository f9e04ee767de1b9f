"""Pytest plugin: ``sandbox`` and ``make_sandbox`` fixtures.

Enable with ``pytest_plugins = ["marketo_sandbox.testing"]`` in ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .config import SandboxConfig
from .sandbox import Sandbox


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
