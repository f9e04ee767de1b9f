"""singer-sdk's standard tap tests, against a sandbox, plus a suite that checks the final state.

The test class discovers streams (calling describe) at collection time, so the sandbox starts
when this module is imported and stops at the end of the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from singer_sdk.testing.factory import BaseTestClass
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.templates import TapTestTemplate

from marketo_sandbox import Sandbox, SandboxConfig
from tap_marketo_opps.streams import KEY_BATCHES
from tap_marketo_opps.tap import TapMarketoOpps
from tap_marketo_opps.testing import run_tap

_SANDBOX = Sandbox(SandboxConfig.small(rate_window_seconds=1.0)).start()
CONFIG = {
    **_SANDBOX.connection_settings(),
    "rate_window_seconds": 1.0,
    "lead_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1872, 456783],
    "external_opportunity_ids": ["OPP-000001", "OPP-000002", "19UYA31581L000000"],
    "start_date": "2024-01-01T00:00:00Z",
}


@pytest.fixture(scope="module", autouse=True)
def _stop_sandbox() -> Iterator[None]:
    yield
    _SANDBOX.stop()


class FinalStateIsResumable(TapTestTemplate):
    """A full sync (the standard runner only does a dry run) ends in a clean, usable state."""

    name = "final_state_is_resumable"

    def test(self) -> None:
        # The dry run never writes key-batch checkpoints: its streams stop at a record limit.
        for message in self.runner.state_messages:
            assert "checkpoint" not in message["value"]["bookmarks"].get("key_batches", {})

        first = run_tap(CONFIG)
        assert first.error is None
        bookmarks = first.last_state["bookmarks"]
        for stream_state in bookmarks.values():
            assert "progress_markers" not in stream_state
            assert "checkpoint" not in stream_state
            assert "replication_key_signpost" not in stream_state
        newest = {}
        for name in ("opportunities", "opportunity_roles"):
            records = first.records(name)
            assert records
            newest[name] = max(r["updatedAt"] for r in records)
            bookmark = bookmarks[name]
            assert (bookmark["replication_key"], bookmark["replication_key_value"]) == (
                "updatedAt",
                newest[name],
            )

        # Resuming from that state emits only what changed since: records at the bookmark's second
        # that are exactly the ones already emitted are not emitted again, and nothing changed.
        second = run_tap(CONFIG, state=first.last_state)
        assert second.error is None
        for name in ("opportunities", "opportunity_roles"):
            assert second.guids(name) == set()


def _without_internal_stream(test_class: type[BaseTestClass]) -> type[BaseTestClass]:
    """Drop the internal key_batches stream from the per-stream and per-attribute test parameters.

    key_batches never writes a record (it only drives the record streams), so its per-stream
    tests could only be skipped. The tap-level tests still sync it, as every run does.
    """
    for test_name, params in list(test_class.params.items()):
        kept = [param for param in params if param.values.stream.name != KEY_BATCHES]
        if kept:
            test_class.params[test_name] = kept
        else:  # a test with no parameters left must not run unparametrized
            del test_class.params[test_name]
            delattr(test_class, test_name)
    return test_class


TestTapMarketoOpps = _without_internal_stream(
    get_tap_test_class(
        TapMarketoOpps,
        config=CONFIG,
        parse_env_config=False,
        custom_suites=[SingerTestSuite(kind="tap", tests=[FinalStateIsResumable])],
        suite_config=SuiteConfig(max_records_limit=1000),
    )
)


def test_standard_tests_cover_every_record_stream_but_not_the_internal_one() -> None:
    streams = {param.values.stream.name for params in TestTapMarketoOpps.params.values() for param in params}
    assert streams == {"opportunities", "opportunity_roles", "opportunity_fields", "opportunity_role_fields"}
    assert "test_tap_stream_returns_record" in TestTapMarketoOpps.params
