"""Issue 14, item 2: the judge must not silently drop out of training, and its cache never kills a run.

The outage guard stops a run whose judge died mid-run (checkpoint, clear message, non-zero exit;
`--resume` goes on once a judge is back); a judge cache that fails (a corrupt or locked SQLite
file) is bypassed with one warning. Real runs with the tiny model, real servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from conftest import SMALL, annotated_set, free_port
from prcli.cache import ResultCache
from prcli.cli import app
from prcli.judge import JudgeConfig, JudgeItem, build_judge
from prcli.testing import FaultServer
from prcli.train.callbacks import JudgeOutage
from prcli.train.checkpoints import checkpoint_problem

runner = CliRunner()
JUDGE = ["--judge", "openai", "--judge-max-retries", "1", "--judge-backoff", "0.01", "--judge-timeout", "2"]


def guard(window: int = 3, threshold: float = 0.5) -> JudgeOutage:
    rewards = SimpleNamespace(last_error="connection error: refused")
    return JudgeOutage(rewards, window, threshold)  # type: ignore[arg-type]


def test_the_guard_stops_once_a_full_window_fails_more_than_the_threshold() -> None:
    g = guard()
    assert [g.observe(step, failed, 8) for step, failed in [(1, 0), (2, 0), (3, 8)]] == [False] * 3  # 8 of 24
    assert g.observe(4, 8, 8) and g.tripped  # 16 of 24 over steps 2-4
    said = g.message(Path("run/checkpoint-4"))
    assert said.startswith("judge outage: 16 of 24 judgements failed over steps 2-4")
    assert "connection error: refused" in said and "checkpoint-4" in said and "with --resume" in said

    assert not guard().observe(1, 8, 8)  # a window not yet full: the first-step check's job
    half = guard(window=2)
    assert not half.observe(1, 0, 8) and not half.observe(2, 8, 8)  # exactly the threshold: not past it
    nothing_judged = guard()
    assert not any(nothing_judged.observe(s, 0, 0) for s in range(1, 5))  # no annotations, no outage
    off = guard(window=0)
    assert not any(off.observe(s, 8, 8) for s in range(1, 5))


def train(model: Path, data: Path, run: Path, url: str, *extra: str):
    args = ["train", "-m", str(model), "--data", str(data), "-o", str(run), *SMALL, "--max-steps", "6"]
    return runner.invoke(app, [*args, *JUDGE, "--judge-base-url", url, "--no-judge-cache", *extra])


def metric_steps(run: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_judge_dying_mid_run_stops_it_with_a_checkpoint_and_resume_goes_on(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    # 8 judged rollouts a step: the server answers steps 1-2, then drops every connection (step 3 on)
    with FaultServer(die_after=16) as srv:
        result = train(tiny_model_dir, data, run, srv.base_url)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (error,) = re.findall(r"error: (.*)", result.output)
    assert error.startswith("judge outage: 16 of 24 judgements failed over steps 2-4"), error
    assert "last error: connection error" in error and str(run / "checkpoint-4") in error
    assert error.endswith("then run the same command with --resume")
    assert metric_steps(run) == [1, 2, 3, 4]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4"]  # the guard's, complete
    assert checkpoint_problem(run / "checkpoint-4") is None
    assert not (run / "model.safetensors").exists()  # no final model: the run did not finish

    with FaultServer() as back:  # the judge is back, at another address
        result = train(tiny_model_dir, data, run, back.base_url, "--resume", "--json")
        requests = len(back.requests)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["resumed_from"].endswith("checkpoint-4") and summary["global_step"] == 6
    assert summary["judge_failures"] == 0 and requests == 16  # steps 5 and 6
    assert metric_steps(run) == [1, 2, 3, 4, 5, 6]
    assert (run / "model.safetensors").exists()


@pytest.mark.slow
def test_every_process_stops_at_the_same_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two processes (gloo DDP under `accelerate launch`) each judge their own rollouts; the guard
    counts both, so both stop after the same step and save its checkpoint together (a process
    going on alone would wait forever in the next collective: the timeout would catch it)."""
    import prcli

    data = annotated_set(tmp_path)
    run = tmp_path / "run"
    launch = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
    ]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(free_port()), "-m", "prcli.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(prcli.__file__).parents[1])}
    with FaultServer(die_after=16) as srv:
        args = ["train", "-m", str(tiny_model_dir), "--data", str(data), "-o", str(run), *SMALL]
        args += ["--per-device-batch-size", "4", "--max-steps", "6", *JUDGE, "--judge-base-url", srv.base_url]
        proc = subprocess.run(launch + args, capture_output=True, text=True, timeout=300, env=env)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, said[-3000:]
    errors = re.findall(r"error: (judge outage: .*)", said)
    assert len(errors) == 2 and all("failed over steps 2-4" in e for e in errors), said[-3000:]
    assert metric_steps(run) == [1, 2, 3, 4]
    assert checkpoint_problem(run / "checkpoint-4") is None and not (run / "model.safetensors").exists()


# ----------------------------------------------------------------------------- the judge cache


ANNS = ["AB = 3", "BC = 4"]


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "prcli.cache"]


def test_a_corrupt_cache_file_is_bypassed_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache" / "results.sqlite"
    cache.parent.mkdir()
    cache.write_bytes(b"not a database, " * 512)  # e.g. a file cut short on a shared home folder
    rows = [
        {"id": f"p{i}#0", "response": f"AB = 3 and BC = 4, case {i}", "annotations": ANNS} for i in range(6)
    ]
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "judgements.jsonl"
    with caplog.at_level(logging.WARNING), FaultServer() as srv:
        args = ["judge", str(responses), "-o", str(out), "--backend", "openai", "--base-url", srv.base_url]
        result = runner.invoke(app, [*args, "--cache-dir", str(cache.parent), "--json"])
        requests = len(srv.requests)
    assert result.exit_code == 0, result.output
    judged = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(j["id"], j["verdicts"], j["score"]) for j in judged] == [(r["id"], [1, 1], 1.0) for r in rows]
    assert requests == 6
    (warning,) = cache_warnings(caplog)
    assert str(cache) in warning and "file is not a database" in warning and "without it" in warning
    assert cache.read_bytes().startswith(b"not a database")  # the user's file is left as it was


def test_a_cache_locked_by_another_process_is_bypassed_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "results.sqlite"
    cache = ResultCache(path, timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)  # another node, holding the write lock
    other.execute("BEGIN EXCLUSIVE")
    items = [JudgeItem(f"p{i}", ANNS, f"AB = 3 and BC = 4, case {i}") for i in range(4)]
    with caplog.at_level(logging.WARNING), FaultServer() as srv:
        cfg = JudgeConfig(backend="openai", base_url=srv.base_url, max_retries=0, concurrency=1)
        judge = build_judge(cfg, cache)
        first = judge.judge_many_sync(items)
        other.execute("ROLLBACK")  # the lock is gone, the cache stays bypassed for the run
        second = judge.judge_many_sync(items)
        requests = len(srv.requests)
    assert [j.score for j in first + second] == [1.0] * 8 and requests == 8  # judged, not cached
    (warning,) = cache_warnings(caplog)
    assert str(path) in warning and "database is locked" in warning
    assert len(cache) == 0 and cache.error is not None
    other.close()

    # locked while it opens (a database not yet in WAL mode): bypassed from the start
    fresh = tmp_path / "fresh.sqlite"
    holder = sqlite3.connect(fresh, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    blocked = ResultCache(fresh, timeout=0.2)
    assert blocked.get("k") is None and "database is locked" in (blocked.error or "")
    blocked.put("k", {"v": 1})
    holder.close()
