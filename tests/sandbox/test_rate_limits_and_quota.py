"""The sandbox's limits: 606 rate window, 607 daily quota, 615 concurrency, many clients without deadlock."""

from __future__ import annotations

import threading
import time

import requests

from marketo_sandbox import Sandbox
from tests.support.sandbox_calls import Api, MakeSandbox, error_code, identity


def test_rate_limit_606_sliding_window(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(rate_limit=5, rate_window_seconds=1.0)
    api = Api(sb)
    describe = "/rest/v1/opportunities/describe.json"
    # Calls refused with 601 do not use up the window.
    for _ in range(3):
        assert error_code(requests.get(sb.base_url + describe, timeout=10).json()) == "601"
    for _ in range(5):
        assert api.get(describe)["success"] is True
    refused = api.get(describe)
    assert error_code(refused) == "606"
    assert refused["errors"][0]["message"] == "Max rate limit '5' exceeded with in '1' secs"
    time.sleep(1.05)
    assert api.get(describe)["success"] is True
    stats = sb.stats()
    assert stats["errors_by_code"] == {"601": 3, "606": 1}
    assert stats["quota_used"] == 6


def test_daily_quota_607(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(daily_quota=3)
    api = Api(sb)
    for _ in range(3):
        assert api.get("/rest/v1/opportunities/describe.json")["success"] is True
    body = api.get("/rest/v1/opportunities/describe.json")
    assert error_code(body) == "607"
    assert "12:00 AM CST" in body["errors"][0]["message"]
    sb.configure(daily_quota=None)
    assert api.get("/rest/v1/opportunities/describe.json")["success"] is True


def _hammer(sb: Sandbox, threads: int, calls: int) -> list[str]:
    token = identity(sb).json()["access_token"]
    codes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker() -> None:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        barrier.wait(timeout=30)
        for _ in range(calls):
            body = s.get(sb.base_url + "/rest/v1/opportunities/describe.json", timeout=30).json()
            with lock:
                codes.append("ok" if body["success"] else body["errors"][0]["code"])

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    return codes


def test_concurrency_limit_615(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(concurrency_limit=2, latency_seconds=0.6, rate_limit=None)
    codes = _hammer(sb, threads=5, calls=1)
    assert len(codes) == 5
    assert codes.count("ok") == 2
    assert codes.count("615") == 3
    stats = sb.stats()
    assert stats["max_concurrency_seen"] == 2
    assert stats["quota_used"] == 2  # 615 refusals are not counted
    assert stats["in_flight"] == 0


def test_many_concurrent_clients_no_deadlock(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(concurrency_limit=None, rate_limit=None, latency_seconds=0.02)
    codes = _hammer(sb, threads=12, calls=8)
    assert codes == ["ok"] * 96
    assert sb.stats()["max_concurrency_seen"] >= 2
