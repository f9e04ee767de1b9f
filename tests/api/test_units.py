"""Unit tests of single functions of the API layer (no server needed)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from marketo_api import MarketoSettings, SettingsError
from marketo_api.datatypes import ValueTypeError, from_api, json_schema_for, to_api
from marketo_api.describe import FieldDescription, ObjectDescription
from marketo_api.errors import (
    TRANSIENT_REASON_CODES,
    CallBudgetExhaustedError,
    Handling,
    error_for,
    handling_for,
)
from marketo_api.limiter import CallLimiter


class FakeClock:
    """Time that moves only when a waiter sleeps, so limiter tests are exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _field(name: str, data_type: str, length: int | None = None) -> FieldDescription:
    return FieldDescription(name=name, display_name=name, data_type=data_type, length=length, updateable=True)


def test_settings_accept_rest_url_and_keep_instance_root() -> None:
    settings = MarketoSettings(
        base_url="https://123-ABC-456.mktorest.com/rest/", client_id="id", client_secret="s"
    )
    assert settings.base_url == "https://123-ABC-456.mktorest.com"
    assert settings.token_url == "https://123-ABC-456.mktorest.com/identity/oauth/token"


def test_settings_build_base_url_from_munchkin_id() -> None:
    settings = MarketoSettings.from_config(
        {"munchkin_id": "123-ABC-456", "client_id": "i", "client_secret": "s"}
    )
    assert settings.base_url == "https://123-ABC-456.mktorest.com"


def test_settings_refuse_plain_http_off_loopback() -> None:
    with pytest.raises(SettingsError, match="https"):
        MarketoSettings(base_url="http://example.com", client_id="i", client_secret="s")
    assert MarketoSettings(base_url="http://127.0.0.1:9", client_id="i", client_secret="s").base_url


def test_settings_repr_hides_secret() -> None:
    settings = MarketoSettings(base_url="https://x.mktorest.com", client_id="i", client_secret="hunter2")
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize("value", [0, 101])
def test_settings_refuse_more_than_marketo_allows(value: int) -> None:
    with pytest.raises(SettingsError, match="max_calls_per_20s"):
        MarketoSettings(
            base_url="https://x.mktorest.com", client_id="i", client_secret="s", max_calls_per_20s=value
        )


@pytest.mark.parametrize(
    ("code", "handling"),
    [
        ("606", Handling.RETRY),
        ("615", Handling.RETRY),
        ("604", Handling.RETRY),
        ("713", Handling.RETRY),
        ("611", Handling.RETRY_FEW),
        ("601", Handling.REAUTHENTICATE),
        ("602", Handling.REAUTHENTICATE),
        ("603", Handling.FAIL),
        ("607", Handling.FAIL),
        ("1018", Handling.FAIL),
    ],
)
def test_error_codes_are_classified(code: str, handling: Handling) -> None:
    assert handling_for(code) is handling


@pytest.mark.parametrize(
    ("code", "marketo_message", "advice"),
    [
        ("1011", "Field 'name' not supported for filterType", "must be searchable fields"),
        ("1001", "Invalid value 'abc'. Required of type 'integer'", "does not have the type"),
        ("1002", "Missing value for required parameter 'filterType'", "required parameter is missing"),
        ("701", "'filterValues' cannot be blank", "required value is blank"),
        ("718", "ExternalSalesPersonID 'SP-9' not found", "create the sales person first"),
        ("1003", "marketoGUID cannot be used with createOnly", "invalid request parameters"),
    ],
)
def test_bad_request_codes_fail_at_once_with_a_clear_message(
    code: str, marketo_message: str, advice: str
) -> None:
    assert handling_for(code) is Handling.FAIL
    assert code not in TRANSIENT_REASON_CODES  # as a record's reason, a skip the target reports, not a retry
    error = error_for(code, marketo_message, request_id="1a2b#3c4d", endpoint="/v1/opportunities.json")
    text = str(error)
    assert text.startswith(f"Marketo error {code}: {marketo_message} (")
    assert advice in text
    assert "[endpoint /v1/opportunities.json] [requestId 1a2b#3c4d]" in text


def test_limiter_never_admits_more_than_max_calls_per_window() -> None:
    clock = FakeClock()
    limiter = CallLimiter(max_calls=3, window_seconds=20, max_concurrent=10, clock=clock)
    for _ in range(3):
        with limiter.slot():
            clock.now += 1
    admitted = threading.Event()

    def fourth() -> None:
        with limiter.slot():
            admitted.set()

    worker = threading.Thread(target=fourth)
    worker.start()
    assert not admitted.wait(0.2), "a 4th call entered a window holding 3"
    clock.now = 21.0  # the first call's window has passed
    with limiter._cond:
        limiter._cond.notify_all()
    worker.join(5)
    assert admitted.is_set()


def test_limiter_caps_calls_in_flight() -> None:
    limiter = CallLimiter(max_calls=100, window_seconds=20, max_concurrent=2)
    inside = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Barrier(6, timeout=5)

    def call() -> None:
        nonlocal inside, peak
        gate.wait()
        with limiter.slot():
            with lock:
                inside += 1
                peak = max(peak, inside)
            threading.Event().wait(0.02)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2


def test_limiter_stops_at_daily_budget_before_sending() -> None:
    limiter = CallLimiter(max_calls=100, window_seconds=20, max_concurrent=5, daily_budget=2)
    for _ in range(2):
        with limiter.slot():
            pass
    with pytest.raises(CallBudgetExhaustedError, match="daily_call_budget of 2"), limiter.slot():
        pytest.fail("a call beyond the budget was admitted")


def test_schema_maps_every_marketo_data_type() -> None:
    description = ObjectDescription(
        name="opportunity",
        display_name="Opportunity",
        id_field="marketoGUID",
        dedupe_fields=("externalOpportunityId",),
        searchable_fields=(("externalOpportunityId",),),
        fields=(
            _field("s", "string", 50),
            _field("t", "text"),
            _field("e", "email", 255),
            _field("i", "integer"),
            _field("sc", "score"),
            _field("p", "percent"),
            _field("f", "float"),
            _field("c", "currency"),
            _field("b", "boolean"),
            _field("d", "date"),
            _field("dt", "datetime"),
            _field("x", "formula"),
        ),
    )
    props = json_schema_for(description)["properties"]
    assert props["s"] == {"type": ["string", "null"], "maxLength": 50}
    assert props["t"] == {"type": ["string", "null"]}
    assert props["e"]["maxLength"] == 255
    assert {props[k]["type"][0] for k in ("i", "sc", "p")} == {"integer"}
    assert {props[k]["type"][0] for k in ("f", "c")} == {"number"}
    assert props["b"]["type"][0] == "boolean"
    assert props["d"]["format"] == "date"
    assert props["dt"]["format"] == "date-time"
    assert props["x"] == {"type": ["string", "null"]}


def test_currency_is_read_exactly() -> None:
    assert from_api(_field("amount", "currency"), "1604.47") == Decimal("1604.47")
    assert from_api(_field("amount", "currency"), 0.1) == Decimal("0.1")


def test_datetimes_are_read_as_one_utc_form() -> None:
    field = _field("updatedAt", "datetime")
    assert from_api(field, "2015-02-23T18:21:53Z") == "2015-02-23T18:21:53+00:00"
    assert from_api(field, "2015-02-23T20:21:53+0200") == "2015-02-23T18:21:53+00:00"


def test_a_date_given_as_a_datetime_must_be_a_whole_valid_datetime() -> None:
    field = _field("closeDate", "date")
    assert from_api(field, "2024-01-01T10:00:00Z") == "2024-01-01"
    assert to_api(field, "2024-01-01T23:30:00-05:00") == "2024-01-01"  # the date as written
    for junk in ("2024-01-01Tjunk", "2024-01-01T", "2024-01-01T25:00:00"):
        with pytest.raises(ValueTypeError):
            from_api(field, junk)
        with pytest.raises(ValueTypeError):
            to_api(field, junk)


def test_a_number_beyond_a_double_is_refused_not_sent() -> None:
    from decimal import Decimal

    assert to_api(_field("amount", "currency"), Decimal("1.5e308")) == format(Decimal("1.5e308"), "f")
    for huge in (Decimal("1e400"), Decimal("-1e309")):
        with pytest.raises(ValueTypeError, match="range"):
            to_api(_field("amount", "currency"), huge)


def test_integer_field_refuses_fraction() -> None:
    with pytest.raises(ValueTypeError, match="whole number"):
        from_api(_field("n", "integer"), "1.5")


def test_values_are_written_in_marketo_form() -> None:
    import datetime as dt

    assert to_api(_field("amount", "currency"), Decimal("1604.470")) == "1604.470"
    assert to_api(_field("d", "date"), dt.date(2026, 1, 2)) == "2026-01-02"
    written = to_api(_field("t", "datetime"), dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    assert written == "2026-01-02T03:04:05+00:00"
    with pytest.raises(ValueTypeError):
        to_api(_field("n", "integer"), True)


def test_settings_take_numbers_in_any_json_form() -> None:
    settings = MarketoSettings.from_config(
        {
            "base_url": "https://x.mktorest.com",
            "client_id": "i",
            "client_secret": "s",
            "rate_window_seconds": Decimal("1.5"),
            "max_calls_per_20s": Decimal("40"),
        }
    )
    assert settings.rate_window_seconds == 1.5
    assert isinstance(settings.rate_window_seconds, float)
    assert settings.max_calls_per_20s == 40


@pytest.mark.parametrize("value", ["Infinity", float("inf"), "1e999", 2**40, "NaN"])
def test_impossible_integers_are_value_errors(value: object) -> None:
    with pytest.raises(ValueTypeError):
        to_api(_field("leadId", "integer"), value)
    with pytest.raises(ValueTypeError):
        from_api(_field("leadId", "integer"), value)


def test_non_finite_numbers_are_value_errors() -> None:
    with pytest.raises(ValueTypeError):
        from_api(_field("amount", "currency"), "Infinity")


def test_secret_values_are_redacted_from_config_errors() -> None:
    from marketo_singer import SETTINGS_JSON_SCHEMA, redact_secrets

    messages = ["987654321 is not of type 'string'", "client_id ok"]
    cleaned = redact_secrets(messages, {"client_secret": 987654321}, SETTINGS_JSON_SCHEMA)
    assert cleaned == ["<redacted> is not of type 'string'", "client_id ok"]


def test_refused_connection_counts_as_never_sent() -> None:
    import socket

    import requests

    from marketo_api.transport import _may_have_arrived

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(requests.ConnectionError) as refused:
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert not _may_have_arrived(refused.value)
    assert _may_have_arrived(requests.ConnectionError("Connection aborted.", "RemoteDisconnected"))


def test_redaction_leaves_words_that_merely_contain_a_short_secret() -> None:
    from marketo_singer import SETTINGS_JSON_SCHEMA, redact_secrets

    cleaned = redact_secrets(
        ["dedupe_by idField needs b", "'b' is too short"], {"client_secret": "b"}, SETTINGS_JSON_SCHEMA
    )
    assert cleaned == ["dedupe_by idField needs <redacted>", "'<redacted>' is too short"]


def test_text_in_a_number_field_is_reported_as_not_a_number() -> None:
    with pytest.raises(ValueTypeError, match=r"'abc': not a number$"):
        from_api(_field("amount", "currency"), "abc")
    with pytest.raises(ValueTypeError, match=r"not a number$"):
        to_api(_field("leadId", "integer"), "abc")


def test_advertised_defaults_are_the_defaults_in_force() -> None:
    """--about shows every default the settings apply (README: 20 s window, 300 s of retries)."""
    import dataclasses

    from marketo_singer import SETTINGS_JSON_SCHEMA

    in_force = {
        f.name: f.default for f in dataclasses.fields(MarketoSettings) if f.default is not dataclasses.MISSING
    }
    advertised = SETTINGS_JSON_SCHEMA["properties"]
    shared = set(in_force) & set(advertised)
    assert {"rate_window_seconds", "max_retry_seconds", "max_calls_per_20s", "daily_call_budget"} <= shared
    for name in shared:
        assert advertised[name].get("default") == in_force[name], name
    assert (advertised["rate_window_seconds"]["default"], advertised["max_retry_seconds"]["default"]) == (
        20,
        300,
    )
    settings = MarketoSettings.from_config(
        {
            "base_url": "https://x.mktorest.com",
            "client_id": "i",
            "client_secret": "s",
            "rate_window_seconds": None,
        }
    )
    assert settings.rate_window_seconds == 20.0
