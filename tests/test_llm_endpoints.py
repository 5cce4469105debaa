"""One LLM endpoint over several URLs: balancing, taking failing URLs out, Retry-After, telemetry.

Every end-to-end test runs real HTTP servers on 127.0.0.1 (`prcli.testing.FaultServer`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from prcli.cli import app
from prcli.concurrency import run_sync
from prcli.llm import (
    RETRY_AFTER_MAX,
    ChatResult,
    Endpoint,
    LLMClient,
    _Attempt,
    _Pool,
    retry_after_seconds,
)
from prcli.testing import FaultServer


def echo(request: dict[str, Any]) -> str:
    """The answer names its question: a result that went to the wrong caller would show."""
    return f"answer to {request['messages'][-1]['content']}"


def client_for(*servers: FaultServer, **settings: Any) -> LLMClient:
    endpoint = dict(timeout=2.0, max_retries=3, backoff=0.01, structured="off", concurrency=8)
    endpoint.update(settings)
    return LLMClient(Endpoint(base_url=[s.base_url for s in servers], model="m", **endpoint))


def ask(client: LLMClient, prompts: list[str]) -> list[ChatResult]:
    async def all_of_them() -> list[ChatResult]:
        return list(await asyncio.gather(*(client.chat([{"role": "user", "content": p}]) for p in prompts)))

    return run_sync(all_of_them())


def answered(servers: tuple[FaultServer, ...]) -> Counter[str]:
    """How often each question got an answer, over all servers."""
    return Counter(
        req["messages"][-1]["content"]
        for srv in servers
        for req, mode in zip(srv.requests, srv.modes_served, strict=True)
        if mode == "ok"
    )


def test_load_is_spread_and_concurrency_is_bounded_over_all_urls() -> None:
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow_echo(request: dict[str, Any]) -> str:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.02)
        with lock:
            in_flight[0] -= 1
        return echo(request)

    prompts = [f"q{i}" for i in range(200)]
    with FaultServer(reply=slow_echo) as a, FaultServer(reply=slow_echo) as b:
        client = client_for(a, b, concurrency=8)
        results = ask(client, prompts)
    assert [r.text for r in results] == [f"answer to {p}" for p in prompts]
    assert peak[0] == 8  # the limit holds over both URLs together
    assert len(a.requests) + len(b.requests) == 200 and 80 <= len(a.requests) <= 120
    stats = client.stats.endpoint_dicts()
    assert [s["url"] for s in stats] == [a.base_url, b.base_url]
    assert [s["requests"] for s in stats] == [len(a.requests), len(b.requests)]
    for s in stats:
        assert s["failures"] == s["in_flight"] == s["taken_out"] == 0
        assert 0.02 <= s["p50_s"] <= s["p95_s"] < 1.0


def test_the_url_with_fewest_in_flight_gets_the_next_request() -> None:
    """Least in flight, not round robin: a slow replica holds its requests longer, so it gets fewer."""
    with FaultServer(reply=echo) as fast, FaultServer(reply=echo, latency=0.25) as slow:
        results = ask(client_for(fast, slow, concurrency=4), [f"q{i}" for i in range(100)])
    assert all(r.ok for r in results)
    # the slow one keeps two of the four slots busy; every other request goes to the fast one
    assert len(slow.requests) < 20 < 80 < len(fast.requests)


def test_a_url_that_dies_mid_run_loses_and_duplicates_nothing() -> None:
    servers = (
        FaultServer(reply=echo, latency=0.01),
        FaultServer(reply=echo, latency=0.01, die_after=15),  # then drops every connection
        FaultServer(reply=echo, latency=0.01),
    )
    prompts = [f"q{i}" for i in range(150)]
    for srv in servers:
        srv.start()
    try:
        client = client_for(*servers, concurrency=12)
        results = ask(client, prompts)
    finally:
        for srv in servers:
            srv.stop()
    assert [r.text for r in results] == [f"answer to {p}" for p in prompts]  # each caller its own answer
    assert answered(servers) == Counter(prompts)  # each question answered exactly once
    sent = [len(srv.requests) for srv in servers]
    assert sum(sent) == sum(r.attempts for r in results) and max(r.attempts for r in results) <= 4
    live, dead, other = client.stats.endpoints
    assert [e.requests for e in client.stats.endpoints] == sent
    assert dead.failures == sent[1] - 15 > 0 and dead.taken_out >= 1
    assert live.failures == other.failures == 0 and client.stats.failed == 0


def test_a_retry_goes_to_another_url_and_when_all_are_out_waits_for_the_first_back() -> None:
    with FaultServer(script=["500"]) as a, FaultServer(script=["500"]) as b:
        client = client_for(a, b, concurrency=1)
        started = time.monotonic()
        (result,) = ask(client, ["q"])
    assert result.ok and result.attempts == 3 and time.monotonic() - started >= 0.9
    assert b.arrivals[0] - a.arrivals[0] < 0.5  # the retry went at once, to the other URL
    assert a.modes_served == ["500", "ok"] and a.arrivals[1] - a.arrivals[0] >= 0.95  # its cooldown: 1 s
    assert [e.taken_out for e in client.stats.endpoints] == [1, 1]


def test_client_errors_do_not_take_a_url_out() -> None:
    """A 400 (say, a prompt past the context) is the request's fault: its URL stays in rotation."""
    with FaultServer(default="400") as bad, FaultServer() as good:
        client = client_for(bad, good, concurrency=1)
        results = [ask(client, [f"q{i}"])[0] for i in range(6)]
    assert [r.status for r in results] == [400, None] * 3  # in turn, no retry of a 400
    assert client.stats.endpoints[0].failures == 3 and client.stats.endpoints[0].taken_out == 0


@pytest.mark.parametrize(("status", "retry_after"), [("429", 0.5), ("503", 0.5), ("429", None)])
def test_retry_after_sets_the_least_delay_before_the_next_attempt(
    status: str, retry_after: float | None
) -> None:
    with FaultServer(script=[status], retry_after=retry_after) as srv:
        client = client_for(srv, backoff=0.01)
        (result,) = ask(client, ["q"])
    assert result.ok and result.attempts == 2
    gap = srv.arrivals[1] - srv.arrivals[0]
    if retry_after:
        assert gap >= retry_after and client.stats.endpoints[0].taken_out == 1
    else:  # a lone URL is not taken out: only the backoff spaces its retries
        assert gap < 0.3 and client.stats.endpoints[0].taken_out == 0


def test_retry_after_values() -> None:
    def http_date(seconds_from_now: float) -> str:
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_from_now)
        return email.utils.format_datetime(when, usegmt=True)

    assert retry_after_seconds("2") == 2.0 and retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds("86400") == RETRY_AFTER_MAX == 60.0 and retry_after_seconds("-3") == 0.0
    assert 1.0 <= (retry_after_seconds(http_date(3)) or 0) <= 3.0  # an HTTP date has whole seconds
    assert retry_after_seconds(http_date(-60)) == 0.0 and retry_after_seconds(http_date(3600)) == 60.0
    assert retry_after_seconds(None) is retry_after_seconds("") is retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None


def test_cooldown_doubles_while_a_url_fails_on_return_and_resets_once_it_answers() -> None:
    now = [100.0]
    pool = _Pool(["a", "b"], clock=lambda: now[0])
    a, b = pool.upstreams
    fault, answer = _Attempt(error="connection error", fault=True), _Attempt(text="ok")
    for cooldown in (1, 2, 4, 8, 16, 30, 30):
        assert pool.take(avoid=b) is a
        pool.done(a, fault, 0.0)
        assert a.out_until - now[0] == cooldown and pool.take(avoid=b) is None
        now[0] = a.out_until  # back in rotation
    assert a.stats.taken_out == 7 and a.stats.failures == 7

    # an answer resets the cooldown; attempts sent before the URL left, failing after, neither
    # take it out again nor double its cooldown
    sent = [pool.take(avoid=b) for _ in range(3)]
    assert sent == [a, a, a] and a.stats.in_flight == 3
    pool.done(a, answer, 0.0)
    pool.done(a, fault, 0.0)
    pool.done(a, fault, 0.0)
    assert a.out_until - now[0] == 1 and a.stats.taken_out == 8 and a.stats.in_flight == 0

    now[0] = a.out_until
    pool.done(pool.take(avoid=b), _Attempt(error="HTTP 400", retryable=False), 0.0)  # type: ignore[arg-type]
    assert a.out_until <= now[0]  # not the URL's fault

    lone = _Pool(["only"], clock=lambda: now[0])
    (only,) = lone.upstreams
    lone.done(lone.take(), fault, 0.0)  # type: ignore[arg-type]
    assert only.out_until <= now[0]  # nowhere else to send: the backoff spaces its retries
    lone.done(lone.take(), _Attempt(error="HTTP 429", fault=True, retry_after=0.5), 0.0)  # type: ignore[arg-type]
    assert only.out_until == now[0] + 0.5 and only.stats.taken_out == 1


def test_endpoint_metrics_are_flat_numbers_and_never_hold_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("MY_KEY", secret)
    with FaultServer(reply=echo) as a, FaultServer(default="500") as b:
        client = client_for(a, b, api_key_env="MY_KEY", concurrency=1)
        assert set(client.stats.endpoint_metrics("judge")) == {
            f"judge/endpoint/{i}/{name}"
            for i in (0, 1)
            for name in ("requests", "failures", "in_flight", "taken_out")  # no latency before an answer
        }
        assert all(r.ok for r in ask(client, ["q1", "q2"]))
    metrics = client.stats.endpoint_metrics("judge")
    assert metrics["judge/endpoint/0/requests"] == 2 and metrics["judge/endpoint/1/failures"] == 1
    assert metrics["judge/endpoint/1/taken_out"] == 1 and metrics["judge/endpoint/0/p95_s"] > 0
    assert "judge/endpoint/1/p50_s" not in metrics  # it never answered
    assert all(isinstance(v, int | float) for v in metrics.values())
    assert secret not in json.dumps([client.stats.endpoint_dicts(), metrics])


def test_pr_judge_over_two_base_urls(tmp_path: Path) -> None:
    responses = tmp_path / "responses.jsonl"
    rows = [
        {"id": f"r{i}", "response": f"AB = 3, take {i}", "annotations": ["AB = 3", "BC = 4"]}
        for i in range(6)
    ]
    responses.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "judgements.jsonl"
    with FaultServer() as a, FaultServer() as b:
        args = ["judge", str(responses), "-o", str(out), "--backend", "openai", "--model", "judge"]
        args += ["--base-url", a.base_url, "--base-url", b.base_url, "--no-cache"]
        result = CliRunner().invoke(app, [*args, "--json"])
        served = len(a.requests), len(b.requests)
        table = CliRunner().invoke(app, [*args, "--overwrite"])  # the human summary has the URLs too
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["score"] for line in out.read_text().splitlines()] == [1.0] * 6
    assert served[0] > 0 and served[1] > 0 and sum(served) == 6
    endpoints = json.loads(result.stdout)["stats"]["endpoints"]
    assert [(e["url"], e["requests"], e["failures"]) for e in endpoints] == [
        (a.base_url, served[0], 0),
        (b.base_url, served[1], 0),
    ]
    assert table.exit_code == 0 and "judge endpoints" in table.output
    ports = [s.base_url.split(":")[-1].split("/")[0] for s in (a, b)]
    assert all(port in table.output for port in ports)
