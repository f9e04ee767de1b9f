"""The write ledger: records Marketo already holds cost no call, and no way of using it loses data.

Every test runs the target against the sandbox; "what Marketo holds" is read from the sandbox's
store. Each adversary case writes once to fill the ledger, then changes something a naive ledger
would miss, and checks that Marketo ends as a run without any ledger would leave it.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marketo_api import MarketoClient, MarketoObject, MarketoSettings
from marketo_sandbox import Fault, RecordFault, Sandbox
from target_marketo_opps.ledger import LedgerError, entry_key, instance_of
from target_marketo_opps.target import TargetMarketoOpps
from target_marketo_opps.writer import WriteCoordinator
from tests.support.target import (
    FastRetryTarget,
    deleted,
    opp,
    opp_schema,
    record,
    role,
    role_schema,
    run_target,
    sdk_style,
    singer_text,
    state,
    store_snapshot,
    target_config,
)

SandboxFactory = Callable[..., Sandbox]
EXECUTABLE = str(Path(sys.executable).parent / "target-marketo-opps")
OPP_WRITE = "POST /rest/v1/opportunities.json"


@pytest.fixture
def sb(make_sandbox: SandboxFactory) -> Sandbox:
    return make_sandbox(opportunities=3, leads=60, heavy_leads=0, rate_limit=None)


def writes(sb: Sandbox) -> int:
    """Sync and delete calls since the last reset (queries and describes excluded)."""
    calls = sb.stats()["calls_by_endpoint"]
    return sum(n for endpoint, n in calls.items() if endpoint.startswith("POST /rest/"))


def run(sb: Sandbox, tmp_path: Path, messages: list[dict[str, Any]], **settings: Any) -> Any:
    """One target run with the test's ledger (counting calls from zero)."""
    sb.reset_stats()
    settings.setdefault("write_ledger_path", str(tmp_path / "ledger.sqlite"))
    return run_target(target_config(sb, tmp_path, **settings), messages)


def statuses(result: Any) -> list[str]:
    return [result.status_of(n) for n in sorted(result.by_record())]


def stage_of(sb: Sandbox, eid: str) -> Any:
    stored = sb.store.opportunity(eid)
    return None if stored is None else stored.get("stage")


# ---- 1. the point of it --------------------------------------------------------------------


def test_the_same_input_twice_makes_no_write_call_the_second_time(sb: Sandbox, tmp_path: Path) -> None:
    messages = sdk_style(30)
    first = run(sb, tmp_path, messages, max_rejections=0)
    assert set(statuses(first)) == {"created"}
    assert writes(sb) > 0
    second = run(sb, tmp_path, messages, max_rejections=0)
    assert writes(sb) == 0
    assert set(statuses(second)) == {"unchanged"}
    # With the marketoGUID Marketo gave the first time; STATE goes out as soon as it is read.
    guids = {n: row["marketoGUID"] for n, row in first.by_record().items()}
    assert {n: row["marketoGUID"] for n, row in second.by_record().items()} == guids
    assert second.states == [m["value"] for m in messages if m["type"] == "STATE"]
    assert "unchanged" in " ".join(second.target.results.summary_lines())


# ---- 2. what counts as a change ------------------------------------------------------------


def test_a_changed_a_cleared_and_a_dropped_field_are_each_sent(sb: Sandbox, tmp_path: Path) -> None:
    before = [opp_schema()] + [opp(f"C-{n}", stage="Won", amount=10) for n in range(4)]
    run(sb, tmp_path, before)
    after = [
        opp_schema(),
        opp("C-0", stage="Lost", amount=10),  # changed
        opp("C-1", stage=None, amount=10),  # cleared
        record("opportunities", {"externalOpportunityId": "C-2", "name": "Opportunity C-2"}),  # fewer
        opp("C-3", stage="Won", amount=10),  # the same
    ]
    result = run(sb, tmp_path, after)
    assert statuses(result) == ["updated", "updated", "updated", "unchanged"]
    assert [stage_of(sb, f"C-{n}") for n in range(4)] == ["Lost", None, "Won", "Won"]
    # A number written another way ("10" vs "10.0") is another payload: sent, never skipped wrongly.
    assert statuses(run(sb, tmp_path, [opp_schema(), opp("C-3", stage="Won", amount=10.5)])) == ["updated"]


def test_values_dropped_by_describe_do_not_count(sb: Sandbox, tmp_path: Path) -> None:
    """The fingerprint is of the payload sent: a field Marketo does not know changes nothing."""
    run(sb, tmp_path, [opp_schema(), opp("D-1", stage="Won")])
    result = run(sb, tmp_path, [opp_schema(), opp("D-1", stage="Won", notAField="x", createdAt=None)])
    assert statuses(result) == ["unchanged"]


# ---- 3. order within one run ---------------------------------------------------------------


def test_a_then_b_then_a_in_one_run_ends_as_a(sb: Sandbox, tmp_path: Path) -> None:
    run(sb, tmp_path, [opp_schema(), opp("ABA", stage="A")])
    result = run(
        sb, tmp_path, [opp_schema(), opp("ABA", stage="A"), opp("ABA", stage="B"), opp("ABA", stage="A")]
    )
    assert statuses(result) == ["unchanged", "updated", "updated"]
    assert stage_of(sb, "ABA") == "A"
    # And the ledger holds the last write: the next run skips it.
    assert statuses(run(sb, tmp_path, [opp_schema(), opp("ABA", stage="A")])) == ["unchanged"]


def test_roles_of_an_opportunity_deleted_earlier_in_the_run_are_sent(sb: Sandbox, tmp_path: Path) -> None:
    messages = [opp_schema(), opp("R-1"), role_schema(), role("R-1", 5), role("R-1", 6)]
    run(sb, tmp_path, messages)
    again = [opp_schema(), deleted(opp("R-1")), opp("R-1"), role_schema(), role("R-1", 5), role("R-1", 6)]
    result = run(sb, tmp_path, again)
    assert statuses(result) == ["deleted", "created", "created", "created"]
    assert sb.store.role("R-1", 5, "Champion") is not None
    assert sb.store.role("R-1", 6, "Champion") is not None


def test_a_record_deleted_by_marketo_guid_earlier_in_the_run_is_sent(sb: Sandbox, tmp_path: Path) -> None:
    first = run(sb, tmp_path, [opp_schema(), opp("G-1", stage="x")])
    guid = first.by_record()[1]["marketoGUID"]
    by_guid = deleted(record("opportunities", {"marketoGUID": guid}))
    result = run(sb, tmp_path, [opp_schema(), by_guid, opp("G-1", stage="x")])
    assert statuses(result) == ["deleted", "created"]
    assert stage_of(sb, "G-1") == "x"


# ---- 4. uncertain outcomes never leave an entry ---------------------------------------------


def test_a_write_whose_answer_was_lost_leaves_no_entry(sb: Sandbox, tmp_path: Path) -> None:
    run(sb, tmp_path, [opp_schema(), opp("U-1", stage="A")])
    # Call 1 is the describe; call 2 the sync, applied and then answered 604 (the answer is lost),
    # so the client sends it again: Marketo may apply either attempt last.
    sb.reset_stats()
    sb.configure(faults=[Fault(kind="604", calls=[2], after_apply=True)])
    config = target_config(sb, tmp_path, write_ledger_path=str(tmp_path / "ledger.sqlite"))
    lost = run_target(config, [opp_schema(), opp("U-1", stage="B")], target_class=FastRetryTarget)
    sb.configure(faults=[])
    assert statuses(lost) == ["updated"]
    assert not ledger_keys(tmp_path, sb, "opportunities")
    assert statuses(run(sb, tmp_path, [opp_schema(), opp("U-1", stage="B")])) == ["updated"]


def test_a_write_a_late_attempt_may_overtake_leaves_no_entry(
    sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox applies the lost first attempt a second later, after the run wrote L-1 again;
    the run re-sends and checks, but a client can never be sure: no entry for L-1 or L-2."""
    monkeypatch.setattr(WriteCoordinator, "LATE_WRITE_SETTLE_SECONDS", 2.0)
    sb.reset_stats()
    sb.configure(faults=[Fault(kind="late", calls=[2], seconds=1.0)])
    config = target_config(
        sb,
        tmp_path,
        write_ledger_path=str(tmp_path / "ledger.sqlite"),
        max_calls_per_20s=100,
        rate_window_seconds=1,
    )
    messages = [opp_schema(), opp("L-1", stage="old"), opp("L-2"), opp("L-1", stage="new")]
    result = run_target(config, messages, target_class=FastRetryTarget)
    sb.configure(faults=[])
    assert statuses(result) == ["created", "created", "updated"]
    assert stage_of(sb, "L-1") == "new"
    assert not ledger_keys(tmp_path, sb, "opportunities")
    again = run(sb, tmp_path, [opp_schema(), opp("L-1", stage="new"), opp("L-2")])
    assert statuses(again) == ["updated", "updated"]


def test_a_skipped_record_loses_its_entry_and_stays_sendable(sb: Sandbox, tmp_path: Path) -> None:
    run(sb, tmp_path, [opp_schema(), opp("S-1", stage="A")])
    sb.configure(record_faults=[RecordFault(code="1014", keys=["S-1"], times=None)])
    skipped = run(sb, tmp_path, [opp_schema(), opp("S-1", stage="B")], target_class=FastRetryTarget)
    sb.configure(record_faults=[])
    assert statuses(skipped) == ["skipped"]
    assert not ledger_keys(tmp_path, sb, "opportunities")
    assert statuses(run(sb, tmp_path, [opp_schema(), opp("S-1", stage="A")])) == ["updated"]
    # updateOnly of a record Marketo does not have: 1004, and sent again next time.
    for _ in range(2):
        missing = run(sb, tmp_path, [opp_schema(), opp("S-404")], action="updateOnly")
        assert statuses(missing) == ["skipped"]
        assert writes(sb) == 1


def test_rejected_records_are_never_fingerprinted(sb: Sandbox, tmp_path: Path) -> None:
    too_long = opp("J-1", stage="x" * 300)
    for _ in range(2):
        assert statuses(run(sb, tmp_path, [opp_schema(), too_long])) == ["rejected"]
    assert not ledger_keys(tmp_path, sb, "opportunities")


# ---- 5. deletes ----------------------------------------------------------------------------


def test_a_delete_removes_the_entries_of_the_record_and_of_its_roles(sb: Sandbox, tmp_path: Path) -> None:
    messages = [opp_schema(), opp("X-1"), role_schema(), role("X-1", 5)]
    run(sb, tmp_path, messages)
    run(sb, tmp_path, [opp_schema(), deleted(opp("X-1"))])  # Marketo deletes its role with it
    assert sb.store.role("X-1", 5, "Champion") is None
    assert statuses(run(sb, tmp_path, messages)) == ["created", "created"]
    assert sb.store.role("X-1", 5, "Champion") is not None


def test_a_delete_by_marketo_guid_removes_the_entries_of_its_opportunitys_roles(
    sb: Sandbox, tmp_path: Path
) -> None:
    messages = [opp_schema(), opp("Y-1"), opp("Y-2"), role_schema(), role("Y-1", 5), role("Y-2", 5)]
    first = run(sb, tmp_path, messages)
    guid = first.by_record()[1]["marketoGUID"]
    run(sb, tmp_path, [opp_schema(), deleted(record("opportunities", {"marketoGUID": guid}))])
    assert ledger_keys(tmp_path, sb, "opportunities/roles") == {entry_key(ROLE_KEY("Y-2"))}
    assert statuses(run(sb, tmp_path, messages)) == ["created", "unchanged", "created", "unchanged"]


def test_a_delete_by_a_marketo_guid_the_ledger_does_not_know_removes_every_role_entry(
    sb: Sandbox, tmp_path: Path
) -> None:
    first = run_target(target_config(sb, tmp_path), [opp_schema(), opp("Y-3")])  # without the ledger
    guid = first.by_record()[1]["marketoGUID"]
    roles = [role_schema(), role("Y-3", 5)]
    run(sb, tmp_path, roles)
    assert ledger_keys(tmp_path, sb, "opportunities/roles")
    run(sb, tmp_path, [opp_schema(), deleted(record("opportunities", {"marketoGUID": guid}))])
    assert not ledger_keys(tmp_path, sb, "opportunities/roles")
    run(sb, tmp_path, [opp_schema(), opp("Y-3")])
    assert statuses(run(sb, tmp_path, roles)) == ["created"]


def ROLE_KEY(eid: str) -> tuple[str, str, tuple[Any, ...]]:
    return ("opportunities/roles", "dedupe", (eid, 5, "Champion"))


# ---- 6. keys that differ in case or outer spaces --------------------------------------------


def test_keys_differing_only_in_case_never_match_each_others_fingerprint(sb: Sandbox, tmp_path: Path) -> None:
    for eid, stage in (("CASE", "X"), ("case", "Y"), ("CASE", "X"), (" CASE ", "X")):
        result = run(sb, tmp_path, [opp_schema(), opp(eid, stage=stage)])
        assert statuses(result) != ["unchanged"], (eid, stage)
    # One entry for the three spellings (a case-insensitive Marketo sees one record).
    assert len(ledger_keys(tmp_path, sb, "opportunities")) == 1


# ---- 7. scope --------------------------------------------------------------------------------


def test_another_instance_client_action_or_dedupe_mode_sends_everything(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    one = make_sandbox(opportunities=3, leads=60, heavy_leads=0, rate_limit=None)
    two = make_sandbox(opportunities=3, leads=60, heavy_leads=0, rate_limit=None)
    renamed = make_sandbox(opportunities=3, leads=60, heavy_leads=0, rate_limit=None, client_id="other")
    messages = [opp_schema(), opp("I-1", stage="x")]
    first = run(one, tmp_path, messages)
    assert statuses(run(two, tmp_path, messages)) == ["created"]  # another base_url
    assert statuses(run(renamed, tmp_path, messages)) == ["created"]  # another client_id
    assert statuses(run(one, tmp_path, messages, action="updateOnly")) == ["updated"]
    guid = first.by_record()[1]["marketoGUID"]
    by_guid = [opp_schema(), record("opportunities", {"marketoGUID": guid, "stage": "x"})]
    assert statuses(run(one, tmp_path, by_guid, action="updateOnly", dedupe_by="idField")) == ["updated"]
    assert statuses(run(one, tmp_path, by_guid, action="updateOnly", dedupe_by="idField")) == ["unchanged"]
    # A write by dedupe fields may change the record the idField entry describes: it goes.
    run(one, tmp_path, [opp_schema(), opp("I-1", stage="y")])
    assert statuses(run(one, tmp_path, by_guid, action="updateOnly", dedupe_by="idField")) == ["updated"]
    assert stage_of(one, "I-1") == "x"
    # And the reverse: a write by marketoGUID removes the entry of its dedupe key.
    run(one, tmp_path, [opp_schema(), opp("I-1", stage="x")])
    run(
        one,
        tmp_path,
        [opp_schema(), record("opportunities", {"marketoGUID": guid, "stage": "z"})],
        action="updateOnly",
        dedupe_by="idField",
    )
    assert statuses(run(one, tmp_path, [opp_schema(), opp("I-1", stage="x")])) == ["updated"]
    assert stage_of(one, "I-1") == "x"


# ---- 8. a lost or broken ledger ---------------------------------------------------------------


def test_a_deleted_ledger_costs_calls_only(sb: Sandbox, tmp_path: Path) -> None:
    messages = sdk_style(5)
    run(sb, tmp_path, messages)
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    result = run(sb, tmp_path, messages)
    assert set(statuses(result)) == {"updated"}
    assert set(statuses(run(sb, tmp_path, messages))) == {"unchanged"}


def test_a_corrupt_ledger_stops_the_run_before_any_call(sb: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    sb.reset_stats()
    with pytest.raises(LedgerError, match=r"write_ledger_path .*ledger\.sqlite.* cannot be opened"):
        run_target(target_config(sb, tmp_path, write_ledger_path=str(path)), [opp_schema(), opp("Z-1")])
    assert writes(sb) == 0
    assert sb.store.opportunity("Z-1") is None


def test_a_ledger_in_a_missing_directory_stops_the_run_naming_it(sb: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "ledger.sqlite"
    with pytest.raises(LedgerError, match="does not exist"):
        run_target(target_config(sb, tmp_path, write_ledger_path=str(path)), [opp_schema(), opp("Z-2")])
    assert sb.store.opportunity("Z-2") is None


# ---- 9. refresh, and the stale-ledger caveat ---------------------------------------------------


def test_refresh_sends_everything_and_stores_fresh_fingerprints(sb: Sandbox, tmp_path: Path) -> None:
    messages = [opp_schema(), opp("F-1", stage="ours")]
    run(sb, tmp_path, messages)
    # Someone else changes the record in Marketo: the ledger cannot know (the documented caveat).
    run_target(target_config(sb, tmp_path), [opp_schema(), opp("F-1", stage="theirs")])
    assert statuses(run(sb, tmp_path, messages)) == ["unchanged"]
    assert stage_of(sb, "F-1") == "theirs"
    refreshed = run(sb, tmp_path, messages, write_ledger_refresh=True)
    assert statuses(refreshed) == ["updated"]
    assert stage_of(sb, "F-1") == "ours"
    assert statuses(run(sb, tmp_path, messages)) == ["unchanged"]


# ---- 11. crash safety and threads ----------------------------------------------------------------


class LedgerWatchingClient(MarketoClient):
    """At the moment each write call leaves, what a second connection sees in the ledger file."""

    seen: list[set[str]] = []
    path = ""

    def sync(self, obj: MarketoObject, records: Any, **kwargs: Any) -> Any:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
            type(self).seen.append({row[0] for row in db.execute("SELECT key FROM entries")})
        return super().sync(obj, records, **kwargs)


def test_entries_are_removed_on_disk_before_the_call_that_may_change_them(
    sb: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "ledger.sqlite"
    run(sb, tmp_path, [opp_schema(), opp("W-1", stage="A"), opp("W-2", stage="A")])
    assert {entry_key(("opportunities", "dedupe", ("W-1",)))} < ledger_keys(tmp_path, sb, "opportunities")

    class Watched(TargetMarketoOpps):
        client_class = LedgerWatchingClient

    LedgerWatchingClient.path, LedgerWatchingClient.seen = str(path), []
    config = target_config(sb, tmp_path, write_ledger_path=str(path), batch_size_rows=1)
    result = run_target(
        config, [opp_schema(), opp("W-1", stage="B"), opp("W-2", stage="A")], target_class=Watched
    )
    assert statuses(result) == ["updated", "unchanged"]
    (seen,) = LedgerWatchingClient.seen
    assert entry_key(("opportunities", "dedupe", ("W-1",))) not in seen
    assert entry_key(("opportunities", "dedupe", ("W-2",))) in seen


def test_a_run_killed_at_any_moment_leaves_a_ledger_that_loses_nothing(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    """Original values, then changed values killed mid-run, then the original values again: Marketo
    must end as a clean run of the original values leaves it (a stale entry would skip some)."""
    sb = make_sandbox(opportunities=3, leads=60, heavy_leads=0, latency_seconds=0.02, rate_limit=None)
    clean = make_sandbox(opportunities=3, leads=60, heavy_leads=0, rate_limit=None)
    ledger = tmp_path / "ledger.sqlite"
    settings = {"batch_size_rows": 10, "max_concurrent_requests": 3, "write_ledger_path": str(ledger)}
    original = sdk_style(60)
    changed = [
        {**m, "record": {**m["record"], "amount": 1}}
        if m["type"] == "RECORD" and m["stream"] == "opportunities"
        else m
        for m in original
    ]
    run_target(target_config(sb, tmp_path, **settings), original)
    source = tmp_path / "changed.singer"
    source.write_text(singer_text(changed), encoding="utf-8")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(target_config(sb, tmp_path, **settings)), encoding="utf-8")
    sb.reset_stats()
    with source.open("rb") as stdin:
        process = subprocess.Popen(
            [EXECUTABLE, "--config", str(config)],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and process.poll() is None
            and sb.stats()["calls_by_endpoint"].get(OPP_WRITE, 0) < 3
        ):
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -9, "the run finished before it could be killed"
    sb.configure(latency_seconds=0)
    rerun = run_target(target_config(sb, tmp_path, **settings), original)
    assert "unchanged" in set(statuses(rerun))  # the ledger still works after the kill
    run_target(target_config(clean, tmp_path), original)
    assert store_snapshot(sb) == store_snapshot(clean)


# ---- 12. dry run --------------------------------------------------------------------------------


def mixed_input() -> list[dict[str, Any]]:
    return [
        opp_schema(),
        opp("M-1", stage="same"),
        opp("M-2", stage="changed"),
        opp("M-3", stage="A"),
        opp("M-3", stage="B"),
        deleted(opp("M-4")),
        opp("M-4"),
        role_schema(),
        role("M-4", 5),
        role("M-1", 5),
        state({"done": True}),
    ]


def test_the_dry_run_predicts_unchanged_as_the_real_run_decides_and_writes_nothing(
    sb: Sandbox, tmp_path: Path
) -> None:
    base = [opp_schema(), *(opp(f"M-{n}", stage="same") for n in (1, 2, 4)), opp("M-3", stage="A")]
    run(sb, tmp_path, [*base, role_schema(), role("M-4", 5), role("M-1", 5)])
    ledger = tmp_path / "ledger.sqlite"
    files = {p.name: p.read_bytes() for p in tmp_path.glob("ledger.sqlite*")}
    dry = run(sb, tmp_path, mixed_input(), dry_run=True)
    assert writes(sb) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.glob("ledger.sqlite*")} == files
    real = run(sb, tmp_path, mixed_input())
    unchanged = sorted(n for n, row in real.by_record().items() if row["status"] == "unchanged")
    assert unchanged == sorted(n for n, row in dry.by_record().items() if row["status"] == "unchanged")
    # M-1, M-3's first occurrence and M-1's role; M-4's role goes: M-4 was deleted before it.
    assert unchanged == [1, 3, 8]
    assert stage_of(sb, "M-3") == "B"
    assert ledger.exists()


def test_a_dry_run_with_a_missing_ledger_creates_no_file(sb: Sandbox, tmp_path: Path) -> None:
    result = run(sb, tmp_path, [opp_schema(), opp("N-1")], dry_run=True)
    assert statuses(result) == ["would_create"]
    assert not list(tmp_path.glob("ledger.sqlite*"))


# ---- 13. secrets ----------------------------------------------------------------------------------


def test_the_ledger_file_holds_no_secret(sb: Sandbox, tmp_path: Path) -> None:
    run(sb, tmp_path, sdk_style(3))
    secret = sb.connection_settings()["client_secret"].encode()
    files = list(tmp_path.glob("ledger.sqlite*"))
    assert files
    for path in files:
        assert secret not in path.read_bytes(), path.name


# ---- helpers --------------------------------------------------------------------------------------


def ledger_keys(tmp_path: Path, sb: Sandbox, obj_path: str) -> set[str]:
    """The keys the test ledger holds for one object of this sandbox."""
    settings = MarketoSettings.from_config(sb.connection_settings())
    scope = f"{instance_of(settings)} {obj_path}"
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        return {row[0] for row in db.execute("SELECT key FROM entries WHERE scope = ?", (scope,))}


def test_ledger_scope_names_the_instance_and_client_but_never_the_secret() -> None:
    settings = MarketoSettings(
        base_url="https://user:pw@123-ABC-456.mktorest.com/rest", client_id="cid", client_secret="s3cret"
    )
    assert instance_of(settings) == "https://123-abc-456.mktorest.com cid"
