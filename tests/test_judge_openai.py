"""The openai judge backend against a real HTTP server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from prcli.judge import JudgeConfig, JudgeItem, OpenAIJudge, build_judge
from prcli.judge.prompt import verdict_regex
from prcli.testing import FaultServer

ANNS = ["AB = 3", "BC = 4", "Angle B is 90 degrees"]
ITEM = JudgeItem("p1", ANNS, "AB = 3 and BC = 4, so AC = 5")


def config(srv: FaultServer, tmp_path: Path, **kw: object) -> JudgeConfig:
    base = dict(
        backend="openai",
        model="judge",
        base_url=srv.base_url,
        timeout=2.0,
        max_retries=2,
        backoff=0.01,
        cache_dir=tmp_path / "cache",
    )
    base.update(kw)
    return JudgeConfig(**base)  # type: ignore[arg-type]


def two_of_three(request: dict) -> str:
    return "Checking each item.\n<info1>1</info1>\n<info2>1</info2>\n<info3>0</info3>"


def test_round_trip_with_structured_outputs(tmp_path: Path) -> None:
    with FaultServer(reply=two_of_three) as srv:
        judge = build_judge(config(srv, tmp_path))
        (j,) = judge.judge_many_sync([ITEM])
        assert j.verdicts == [1, 1, 0] and j.score == pytest.approx(2 / 3) and j.error is None
        assert j.raw is not None and "<info3>0</info3>" in j.raw
        (req,) = srv.requests
        assert req["model"] == "judge" and req["temperature"] == 0.0 and req["max_tokens"] == 512
        assert req["structured_outputs"] == {"regex": verdict_regex(3)}
        assert req["messages"][1]["content"].startswith("Visual Key Information: <info1>AB = 3</info1>")


def test_structured_outputs_fall_back_to_text_when_the_server_rejects_them(tmp_path: Path) -> None:
    with FaultServer(reply=two_of_three, script=["422"]) as srv:
        judge = build_judge(config(srv, tmp_path, cache=False))
        results = judge.judge_many_sync([ITEM]) + judge.judge_many_sync([JudgeItem("p2", ANNS, "x")])
        assert [r.score for r in results] == [pytest.approx(2 / 3)] * 2
        assert "structured_outputs" in srv.requests[0]
        assert all("structured_outputs" not in r for r in srv.requests[1:])  # remembered for later requests
        assert len(srv.requests) == 3


def test_other_client_errors_keep_structured_outputs_on(tmp_path: Path) -> None:
    """A 400 for another reason (here: the context is too long) fails that item only."""
    with FaultServer(reply=two_of_three, script=["400"]) as srv:
        judge = build_judge(config(srv, tmp_path, cache=False))
        first = judge.judge_many_sync([ITEM])
        second = judge.judge_many_sync([JudgeItem("p2", ANNS, "x")])
        assert first[0].score is None and "maximum context length" in (first[0].error or "")
        assert second[0].score == pytest.approx(2 / 3)
        assert all("structured_outputs" in r for r in srv.requests)  # still constrained
        assert len(srv.requests) == 2


@pytest.mark.parametrize(
    ("mode", "body"),
    [
        ("vllm-legacy", "guided_regex"),
        ("json", "response_format"),
        ("off", None),
    ],
)
def test_structured_modes(tmp_path: Path, mode: str, body: str | None) -> None:
    with FaultServer(reply=lambda r: '{"info1": 1, "info2": 0, "info3": 1}') as srv:
        judge = build_judge(config(srv, tmp_path, structured=mode, cache=False))
        (j,) = judge.judge_many_sync([ITEM])
        assert j.verdicts == [1, 0, 1]
        req = srv.requests[0]
        assert "structured_outputs" not in req
        if body:
            assert body in req
        if mode == "json":
            assert req["response_format"]["json_schema"]["schema"]["required"] == ["info1", "info2", "info3"]


@pytest.mark.parametrize("fault", ["500", "429", "drop", "malformed", "truncated", "empty", "hang"])
def test_transient_faults_are_retried(tmp_path: Path, fault: str) -> None:
    with FaultServer(reply=two_of_three, script=[fault], hang_seconds=5) as srv:
        judge = build_judge(config(srv, tmp_path, timeout=0.5, cache=False))
        (j,) = judge.judge_many_sync([ITEM])
        assert j.score == pytest.approx(2 / 3), j.error
        assert srv.modes_served == [fault, "ok"]
        assert judge.client.stats.retries == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("500", "HTTP 500"),
        ("drop", "connection error"),
        ("malformed", "bad response"),
        ("hang", "timed out after 0.5s"),
    ],
)
def test_persistent_faults_fail_after_bounded_retries(tmp_path: Path, fault: str, message: str) -> None:
    with FaultServer(default=fault, hang_seconds=5) as srv:
        judge = build_judge(config(srv, tmp_path, timeout=0.5, max_retries=2))
        started = time.monotonic()
        results = judge.judge_many_sync([ITEM, JudgeItem("p2", ANNS, "BC = 4")])
        assert time.monotonic() - started < 10
        for r in results:
            assert r.score is None and r.verdicts == [] and r.error is not None and message in r.error
        assert len(srv.requests) == 2 * 3  # 1 try + 2 retries each, no more
        assert judge.stats.failures == 2 and judge.stats.judged == 0
        assert len(judge.cache or []) == 0  # failures are never cached


def test_zero_policy_scores_failures_zero(tmp_path: Path) -> None:
    with FaultServer(default="500") as srv:
        judge = build_judge(config(srv, tmp_path, max_retries=0, failure_policy="zero"))
        (j,) = judge.judge_many_sync([ITEM])
        assert j.score == 0.0 and j.error == "HTTP 500: injected 500"


def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    with FaultServer(default="400") as srv:
        judge = build_judge(config(srv, tmp_path, structured="off", max_retries=3))
        (j,) = judge.judge_many_sync([ITEM])
        assert j.score is None and j.error is not None and j.error.startswith("HTTP 400")
        assert len(srv.requests) == 1


def test_server_down_is_a_counted_failure_not_a_crash(tmp_path: Path) -> None:
    srv = FaultServer()
    url = srv.base_url
    srv._server.server_close()  # the port is closed: nothing listens
    cfg = JudgeConfig(backend="openai", base_url=url, max_retries=1, backoff=0.01, timeout=1, cache=False)
    judge = build_judge(cfg)
    results = judge.judge_many_sync([ITEM] * 3)
    assert all(r.score is None and "connection error" in (r.error or "") for r in results)
    assert judge.stats.failures == 3


def test_cache_hit_on_a_second_run_costs_no_request(tmp_path: Path) -> None:
    items = [JudgeItem(f"p{i}", ANNS, f"AB = 3, step {i}") for i in range(5)]
    with FaultServer(reply=two_of_three) as srv:
        first = build_judge(config(srv, tmp_path)).judge_many_sync(items)
        assert len(srv.requests) == 5
        second_judge = build_judge(config(srv, tmp_path))
        second = second_judge.judge_many_sync(items)
        assert len(srv.requests) == 5 and second_judge.stats.cache_hits == 5
        assert [j.model_dump() for j in first] == [j.model_dump() for j in second]
        # the key covers the model and the response: a change is a miss
        build_judge(config(srv, tmp_path, model="other")).judge_many_sync(items[:1])
        build_judge(config(srv, tmp_path)).judge_many_sync([JudgeItem("p0", ANNS, "changed")])
        assert len(srv.requests) == 7
        # --no-cache bypasses it
        build_judge(config(srv, tmp_path, cache=False)).judge_many_sync(items[:1])
        assert len(srv.requests) == 8


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    import threading

    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow(request: dict) -> str:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return two_of_three(request)

    items = [JudgeItem(f"p{i}", ANNS, f"r{i}") for i in range(40)]
    with FaultServer(reply=slow) as srv:
        judge = build_judge(config(srv, tmp_path, concurrency=4, cache=False))
        results = judge.judge_many_sync(items)
    assert all(r.score == pytest.approx(2 / 3) for r in results)
    assert peak[0] == 4


def test_api_key_never_appears_in_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    with FaultServer(default="401") as srv:
        judge = OpenAIJudge(config(srv, tmp_path, api_key_env="MY_JUDGE_KEY", max_retries=0))
        (j,) = judge.judge_many_sync([ITEM])
        assert srv.requests and j.error is not None
        assert "Incorrect API key provided: ***" in j.error and secret not in j.error
        assert secret not in repr(judge.config.model_dump())


def test_items_without_annotations_are_not_sent(tmp_path: Path) -> None:
    with FaultServer() as srv:
        judge = build_judge(config(srv, tmp_path))
        (j,) = judge.judge_many_sync([JudgeItem("p", [], "anything")])
        assert j.score is None and j.error is None and not srv.requests
        assert judge.stats.no_annotations == 1


def test_fractional_verdicts_are_kept_and_cached(tmp_path: Path) -> None:
    """The official parser keeps a value such as 0.5 (clamped); so do we, in the record and the cache."""
    with FaultServer(reply=lambda r: "<info1>1</info1>\n<info2>0.5</info2>") as srv:
        (j,) = build_judge(config(srv, tmp_path, structured="off")).judge_many_sync([ITEM])
        assert j.verdicts == [1, 0.5, 0] and j.score == pytest.approx(0.5)
        again = build_judge(config(srv, tmp_path, structured="off"))
        (k,) = again.judge_many_sync([ITEM])
        assert k.model_dump() == j.model_dump() and again.stats.cache_hits == 1


def test_repeated_runs_reuse_connections(tmp_path: Path) -> None:
    """Sync callers share one event loop, so its HTTP client (and sockets) is made once, not per call."""
    import os

    with FaultServer(reply=two_of_three) as srv:
        judge = build_judge(config(srv, tmp_path, cache=False, concurrency=4))
        judge.judge_many_sync([ITEM] * 4)
        before = len(os.listdir("/proc/self/fd"))
        for i in range(40):
            judge.judge_many_sync([JudgeItem(f"r{i}-{k}", ANNS, "AB = 3") for k in range(4)])
        assert len(os.listdir("/proc/self/fd")) - before < 10
        assert len(judge.client._per_loop) == 1  # type: ignore[attr-defined]


def test_an_answer_cut_at_max_tokens_is_retried_then_failed_and_never_cached(tmp_path: Path) -> None:
    """finish_reason "length": the half answer `<info1>1</info1>\\n<info2>` would score 1/3 (missing
    tags count 0), be cached, and be served to every later run. It is a failed attempt instead."""
    with FaultServer(reply=two_of_three, default="length") as srv:
        judge = build_judge(config(srv, tmp_path))
        (j,) = judge.judge_many_sync([ITEM])
        assert j.score is None and j.verdicts == [] and "cut at max_tokens=512" in (j.error or "")
        assert len(srv.requests) == 3  # the first attempt and both retries
        assert judge.stats.failures == 1 and judge.stats.errors == {"truncated": 1}
        judge.close()
        # one cut answer, then a whole one: the retry gives the right score
        srv.set(script=["length"], default="ok")
        judge = build_judge(config(srv, tmp_path))
        (j,) = judge.judge_many_sync([ITEM])
        assert j.score == pytest.approx(2 / 3) and j.error is None
        assert judge.stats.cache_hits == 0  # nothing of the cut answers was cached
        judge.close()


def test_a_cut_answer_under_failure_policy_zero_is_still_counted_as_a_failure(tmp_path: Path) -> None:
    with FaultServer(reply=two_of_three, default="length") as srv:
        judge = build_judge(config(srv, tmp_path, failure_policy="zero", max_retries=0))
        (j,) = judge.judge_many_sync([ITEM])
        assert j.score == 0.0 and j.error is not None and judge.stats.failures == 1
        judge.close()
