"""The shared Marketo client against the sandbox, over real HTTP."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from marketo_api import (
    CallBudgetExhaustedError,
    CrmSyncEnabledError,
    MarketoAuthenticationError,
    MarketoClient,
    MarketoError,
    MarketoObject,
    MarketoPermissionError,
    MarketoQuotaExceededError,
    MarketoSettings,
    RetriesExhaustedError,
)
from marketo_sandbox import Fault, Sandbox

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE
MakeSandbox = Callable[..., Sandbox]


def no_sleep(_: float) -> None:
    """Retry waits are not what these tests measure; the sandbox decides what each call gets."""


def client_for(sb: Sandbox, *, sleep: Callable[[float], None] = no_sleep, **overrides: Any) -> MarketoClient:
    config: dict[str, Any] = {**sb.connection_settings(), **overrides}
    return MarketoClient(MarketoSettings.from_config(config), sleep=sleep)


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[MarketoClient]:
    with client_for(sandbox) as c:
        yield c


def all_records(pages: Iterator[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [record for page in pages for record in page]


def test_describe_gives_keys_and_fields_of_both_objects(client: MarketoClient) -> None:
    opp = client.describe(OPP)
    role = client.describe(ROLE)
    assert opp.id_field == "marketoGUID"
    assert opp.dedupe_fields == ("externalOpportunityId",)
    assert "externalOpportunityId" in opp.single_searchable_fields
    assert role.dedupe_fields == ("externalOpportunityId", "leadId", "role")
    assert ("externalOpportunityId", "leadId", "role") in role.searchable_fields
    assert role.field("leadId").data_type == "integer"


def test_query_answers_the_documented_example(client: MarketoClient) -> None:
    records = all_records(
        client.query(
            OPP,
            "externalOpportunityId",
            ["19UYA31581L000000", "29UYA31581L000000"],
            fields=["externalOpportunityId", "name", "amount", "source"],
        )
    )
    by_id = {r["externalOpportunityId"]: r for r in records}
    assert by_id["19UYA31581L000000"]["name"] == "Chairs"
    assert str(by_id["19UYA31581L000000"]["amount"]) == "1604.47"
    assert by_id["29UYA31581L000000"]["source"] == "Email"


def test_paging_follows_tokens_without_more_result(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(emit_more_result=False, trailing_empty_page=True)
    expected = {r["marketoGUID"] for r in sb.store.roles() if r["leadId"] in (1, 2, 3, 4, 5)}
    with client_for(sb) as c:
        pages = list(c.query(ROLE, "leadId", [1, 2, 3, 4, 5], batch_size=2))
    got = [r["marketoGUID"] for page in pages for r in page]
    assert len(pages) >= 2
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected


def test_heavy_lead_roles_come_back_over_several_pages(sandbox: Sandbox) -> None:
    counts: dict[int, int] = {}
    for role in sandbox.store.roles():
        counts[role["leadId"]] = counts.get(role["leadId"], 0) + 1
    heavy = max(counts, key=lambda k: counts[k])
    assert counts[heavy] > 300
    with client_for(sandbox) as c:
        pages = list(c.query(ROLE, "leadId", [heavy]))
    assert len(pages) == 2
    assert sum(len(p) for p in pages) == counts[heavy]


def test_long_filter_switches_to_post_and_never_gets_414(sandbox: Sandbox) -> None:
    long_ids = [f"LONG-{i:06d}-" + "x" * 36 for i in range(299)] + ["19UYA31581L000000"]
    with client_for(sandbox) as c:
        records = all_records(
            c.query(OPP, "externalOpportunityId", long_ids, fields=["externalOpportunityId"])
        )
    assert [r["externalOpportunityId"] for r in records] == ["19UYA31581L000000"]
    stats = sandbox.stats()
    assert "414" not in stats["http_status"]
    assert not any(k.startswith("GET /rest/v1/opportunities.json") for k in stats["calls_by_endpoint"])


def test_compound_key_query_finds_roles_by_whole_key(client: MarketoClient) -> None:
    keys = [
        {"externalOpportunityId": "Opportunity1", "leadId": 1, "role": "Captain"},
        {"externalOpportunityId": "Opportunity2", "leadId": 1872, "role": "Commander"},
        {"externalOpportunityId": "Opportunity2", "leadId": 1872, "role": "Nobody"},
    ]
    records = all_records(client.query_by_compound_key(ROLE, keys))
    assert sorted((r["externalOpportunityId"], r["role"]) for r in records) == [
        ("Opportunity1", "Captain"),
        ("Opportunity2", "Commander"),
    ]


def test_sync_and_delete_report_one_result_per_record(client: MarketoClient, sandbox: Sandbox) -> None:
    results = client.sync(
        OPP,
        [
            {"externalOpportunityId": "NEW-1", "name": "New one", "amount": "10.50"},
            {"externalOpportunityId": "19UYA31581L000000", "name": "Chairs v2"},
            {"externalOpportunityId": "NEW-2", "name": "Bad", "noSuchField": 1},
        ],
    )
    assert [r.status for r in results] == ["created", "updated", "skipped"]
    assert results[2].reasons[0].code == "1006"
    assert all(not r.after_uncertain_attempt for r in results)
    deleted = client.delete(OPP, [{"externalOpportunityId": "NEW-1"}, {"externalOpportunityId": "NOPE"}])
    assert [r.status for r in deleted] == ["deleted", "skipped"]
    assert deleted[1].reasons[0].code == "1013"
    assert "NEW-1" not in {o["externalOpportunityId"] for o in sandbox.store.opportunities()}


def test_field_metadata_pages_and_single_field(client: MarketoClient) -> None:
    fields = all_records(client.opportunity_fields(batch_size=5))
    names = [f["name"] for f in fields]
    assert len(names) == len(set(names)) > 5
    assert "externalOpportunityId" in names
    assert client.opportunity_field("externalOpportunityId")["length"] == 50


@pytest.mark.parametrize("kind", ["606", "615", "604", "608", "713", "611", "http500", "http502", "drop"])
def test_transient_errors_are_retried_until_success(make_sandbox: MakeSandbox, kind: str) -> None:
    sb = make_sandbox(faults=[Fault(kind=kind, calls=[1, 2])])
    with client_for(sb) as c:
        description = c.describe(OPP)
        assert description.id_field == "marketoGUID"
        assert sum(c.stats.retries_by_code.values()) == 2
    assert sb.stats()["rest_calls"] == 3


def test_write_retried_after_uncertain_outcome_is_flagged(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(faults=[Fault(kind="604", calls=[1], after_apply=True)])
    with client_for(sb) as c:
        results = c.sync(OPP, [{"externalOpportunityId": "UNC-1", "name": "x"}], action="createOrUpdate")
    assert results[0].status == "updated"  # the first, timed-out attempt had created it
    assert results[0].after_uncertain_attempt


def test_system_error_is_retried_only_a_few_times(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(faults=[Fault(kind="611", rate=1.0)])
    with client_for(sb) as c, pytest.raises(RetriesExhaustedError, match="611"):
        c.describe(OPP)
    assert sb.stats()["rest_calls"] == 4


def test_retries_stop_at_the_total_time_bound(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(faults=[Fault(kind="608", rate=1.0)])
    slept: list[float] = []
    with client_for(sb, sleep=slept.append, max_retry_seconds=30) as c, pytest.raises(RetriesExhaustedError):
        c.describe(OPP)
    assert sum(slept) <= 30


def test_revoked_token_is_renewed_and_call_repeated(sandbox: Sandbox, client: MarketoClient) -> None:
    client.describe(OPP)
    sandbox.revoke_tokens()
    assert client.describe(OPP).id_field == "marketoGUID"
    assert client.stats.reauthentications == 1
    assert client.stats.retries_by_code["601"] == 1


def test_expired_token_is_renewed_even_when_cache_thinks_it_valid(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(token_ttl_seconds=1)
    with client_for(sb) as c:
        c.describe(OPP)
        c._auth._clock = lambda: 0.0  # our cache now believes the token never expires
        time.sleep(1.2)
        c.describe(OPP)
        assert c.stats.retries_by_code["602"] == 1


def test_daily_quota_error_says_when_it_resets(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(daily_quota=1)
    with client_for(sb) as c:
        c.describe(OPP)
        with pytest.raises(MarketoQuotaExceededError, match=r"607.*12:00 AM"):
            c.describe(ROLE)


def test_crm_sync_refusal_explains_read_only(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(crm_sync=True)
    with client_for(sb) as c, pytest.raises(CrmSyncEnabledError, match="read-only"):
        c.describe(ROLE)


def test_bad_credentials_fail_clearly(sandbox: Sandbox) -> None:
    settings = {**sandbox.connection_settings(), "client_secret": "wrong-secret-value"}
    with (
        MarketoClient(MarketoSettings.from_config(settings)) as c,
        pytest.raises(MarketoAuthenticationError, match="invalid_client") as caught,
    ):
        c.describe(OPP)
    assert "wrong-secret-value" not in str(caught.value)


def test_daily_call_budget_stops_before_the_call(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    with client_for(sb, daily_call_budget=3) as c:
        for _ in range(3):
            c.describe(OPP)
        with pytest.raises(CallBudgetExhaustedError, match="daily_call_budget of 3"):
            c.describe(OPP)
    assert sb.stats()["rest_calls"] == 3


def test_limiter_keeps_ten_threads_inside_marketo_limits(make_sandbox: MakeSandbox) -> None:
    window = 1.0
    sb = make_sandbox(rate_limit=100, rate_window_seconds=window, concurrency_limit=10, latency_seconds=0.01)
    with client_for(
        sb, sleep=time.sleep, max_calls_per_20s=100, max_concurrent_requests=10, rate_window_seconds=window
    ) as c:
        errors: list[BaseException] = []

        def fifty_calls() -> None:
            try:
                for _ in range(50):
                    c.opportunity_field("name")
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        started = time.monotonic()
        threads = [threading.Thread(target=fifty_calls) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        assert errors == []
        assert c.stats.calls == 500
    stats = sb.stats()
    assert stats["rest_calls"] == 500
    assert "606" not in stats["errors_by_code"]
    assert "615" not in stats["errors_by_code"]
    assert stats["max_concurrency_seen"] <= 10
    assert elapsed >= 4 * window  # 500 calls at 100 per window cannot take less


def test_no_secret_or_token_reaches_logs(make_sandbox: MakeSandbox, caplog: pytest.LogCaptureFixture) -> None:
    sb = make_sandbox(faults=[Fault(kind="606", calls=[2]), Fault(kind="http502", calls=[3])], crm_sync=True)
    secret = sb.connection_settings()["client_secret"]
    messages: list[str] = []
    caplog.set_level(logging.DEBUG)
    with client_for(sb) as c:
        c.describe(OPP)  # success
        c.describe(OPP)  # 606 then 502 then success
        token = c._auth.token()
        sb.revoke_tokens()
        c.describe(OPP)  # 601, renewal
        with pytest.raises(CrmSyncEnabledError) as fatal:
            c.describe(ROLE)
        messages.append(str(fatal.value))
    bad = {**sb.connection_settings(), "client_secret": secret + "-wrong"}
    with (
        MarketoClient(MarketoSettings.from_config(bad)) as c,
        pytest.raises(MarketoAuthenticationError) as auth,
    ):
        c.describe(OPP)
    messages.append(str(auth.value))
    text = caplog.text + "\n".join(messages)
    assert "retrying" in caplog.text  # the retries were logged
    assert secret not in text
    assert token.split(":")[0] not in text


def test_bad_request_fails_at_once_with_code_message_and_request_id(sandbox: Sandbox) -> None:
    with client_for(sandbox) as c, pytest.raises(MarketoError) as caught:
        list(c.query(OPP, "name", ["Chairs"]))  # name is not searchable
    error = caught.value
    assert error.code == "1011"  # Marketo's "field not supported" for a filterType
    assert error.request_id
    assert "#" in error.request_id
    assert "filterType" in str(error)
    assert "must be searchable fields" in str(error)
    assert "requestId" in str(error)
    assert sandbox.stats()["rest_calls"] == 1  # not retried


def test_unknown_field_fails_naming_the_field(client: MarketoClient) -> None:
    with pytest.raises(MarketoError, match=r"610.*not found"):
        client.opportunity_field("noSuchField")


def test_lookup_uses_a_filter_for_one_field_keys_and_input_for_compound(sandbox: Sandbox) -> None:
    with client_for(sandbox) as c:
        simple = all_records(c.lookup(OPP, [{"externalOpportunityId": "19UYA31581L000000"}]))
        with_comma = all_records(c.lookup(OPP, [{"externalOpportunityId": "A,B"}]))
        compound = all_records(
            c.lookup(ROLE, [{"externalOpportunityId": "Opportunity1", "leadId": 1, "role": "Captain"}])
        )
    assert [r["externalOpportunityId"] for r in simple] == ["19UYA31581L000000"]
    assert with_comma == []
    assert [r["role"] for r in compound] == ["Captain"]
    calls = sandbox.stats()["calls_by_endpoint"]
    assert calls.get("GET /rest/v1/opportunities.json") == 1
    assert sum(v for k, v in calls.items() if k.startswith("QUERY")) == 2


def test_write_refused_before_running_is_not_flagged_uncertain(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(faults=[Fault(kind="606", calls=[1]), Fault(kind="615", calls=[2])])
    with client_for(sb) as c:
        results = c.sync(OPP, [{"externalOpportunityId": "SURE-1", "name": "x"}])
    assert results[0].status == "created"
    assert not results[0].after_uncertain_attempt


def test_access_denied_names_the_permission_and_is_not_retried(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(faults=[Fault(kind="603", calls=[1])])
    with client_for(sb) as c, pytest.raises(MarketoPermissionError, match="Read-Write Opportunity"):
        c.describe(OPP)
    assert sb.stats()["rest_calls"] == 1


def test_unknown_sales_person_in_a_sync_result_is_that_records_skip(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(sales_person_check="record")
    records = [
        {"externalOpportunityId": "SP-OK", "name": "fine"},
        {"externalOpportunityId": "SP-BAD", "name": "x", "externalSalesPersonId": "NO-SUCH-PERSON"},
    ]
    with client_for(sb) as c:
        results = c.sync(OPP, records)
    assert [r.status for r in results] == ["created", "skipped"]
    assert [r.code for r in results[1].reasons] == ["718"]
    assert sb.stats()["rest_calls"] == 1  # not retried


def test_unknown_sales_person_refusing_the_call_fails_at_once_naming_the_field(
    make_sandbox: MakeSandbox,
) -> None:
    sb = make_sandbox(sales_person_check="response")
    record = {"externalOpportunityId": "SP-BAD", "name": "x", "externalSalesPersonId": "NO-SUCH-PERSON"}
    with client_for(sb) as c, pytest.raises(MarketoError) as caught:
        c.sync(OPP, [record])
    assert caught.value.code == "718"
    assert "externalSalesPersonId names no sales person" in str(caught.value)
    assert sb.stats()["rest_calls"] == 1


@pytest.mark.parametrize("trimmed", [False, True])
def test_lookup_of_a_value_with_outer_whitespace_finds_only_that_value(
    make_sandbox: MakeSandbox, trimmed: bool
) -> None:
    sb = make_sandbox(rate_limit=None, filter_values_trimmed=trimmed)
    with client_for(sb) as c:
        c.sync(OPP, [{"externalOpportunityId": "SPACED", "name": "no spaces"}])
        found = all_records(c.lookup(OPP, [{"externalOpportunityId": " SPACED"}]))
    assert found == []  # " SPACED" is not "SPACED", whatever Marketo trims in filterValues
