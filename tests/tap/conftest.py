"""Fixtures for the tap's sync tests (tests/tap/test_sync_*.py); their helpers are in tests/support/tap.py.

`sb` and `catalog` are module-scoped: one read-only sandbox per test module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from marketo_sandbox import Sandbox
from tap_marketo_opps.testing import discover
from tests.support.tap import small, tap_config


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    """A shared read-only sandbox (tests that change data or faults start their own)."""
    with Sandbox(small()) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def catalog(sb: Sandbox) -> dict[str, Any]:
    return discover(tap_config(sb))


@pytest.fixture
def own_sandbox() -> Iterator[list[Sandbox]]:
    started: list[Sandbox] = []
    yield started
    for sandbox in started:
        sandbox.stop()
