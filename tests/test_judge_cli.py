"""`pr judge` end to end: files in, judgements out, resume, failures, real servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prcli.cli import app
from prcli.judge import JudgeConfig, JudgeItem, build_judge
from prcli.testing import FaultServer

runner = CliRunner()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    annotated = write_jsonl(
        tmp_path / "annotated.jsonl",
        [
            {
                "id": "p1",
                "question": "q",
                "answer": "5",
                "annotations": ["AB = 3 cm", "BC = 4 cm", "Angle B is 90 degrees"],
            },
            {
                "id": "p2",
                "question": "q",
                "answer": "1",
                "annotations": ["GE is perpendicular to DF at point E"],
            },
            {"id": "p3", "question": "q", "answer": "1", "annotations": []},
        ],
    )
    responses = write_jsonl(
        tmp_path / "responses.jsonl",
        [
            {"id": "p1#0", "problem_id": "p1", "response": "AB = 3 and BC = 4 with angle B = 90, so AC = 5"},
            {"id": "p1#1", "problem_id": "p1", "response": "AB = 3 so 5"},
            {"id": "p2#0", "problem_id": "p2", "response": "GE \\perp DF at E"},
            {"id": "p3#0", "problem_id": "p3", "response": "whatever"},
        ],
    )
    return {"annotated": annotated, "responses": responses, "out": tmp_path / "out" / "judgements.jsonl"}


def judge_args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "judge",
        str(files["responses"]),
        "--annotations",
        str(files["annotated"]),
        "--annotation-key",
        "problem_id",
        "-o",
        str(files["out"]),
        *extra,
    ]


def test_lexical_judge_end_to_end_and_resume(files: dict[str, Path]) -> None:
    result = runner.invoke(app, [*judge_args(files), "--json"])
    assert result.exit_code == 0, result.output
    rows = read_jsonl(files["out"])
    assert [r["id"] for r in rows] == ["p1#0", "p1#1", "p2#0", "p3#0"]
    assert [r["verdicts"] for r in rows] == [[1, 1, 1], [1, 0, 0], [1], []]
    assert [r["score"] for r in rows] == [1.0, pytest.approx(1 / 3), 1.0, None]
    summary = json.loads(result.stdout)
    assert summary["total"] == 4 and summary["written"] == 4 and summary["mean_score"] == pytest.approx(7 / 9)
    config = files["out"].with_name("judgements.config.yaml").read_text()
    assert "backend: lexical" in config and "judge_prompt_sha256: null" in config  # no prompt
    assert {r["prompt_sha256"] for r in rows} == {None}

    # a second run has nothing to do; the file is unchanged
    before = files["out"].read_bytes()
    result = runner.invoke(app, [*judge_args(files), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["already_done"] == 4 and json.loads(result.stdout)["written"] == 0
    assert files["out"].read_bytes() == before

    # another judge into the same output redoes every judgement: none of the lexical ones is
    # reported as its own (here the server is down, so all but the one without annotations fail)
    dead = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0", "--no-cache"]
    result = runner.invoke(app, [*judge_args(files, *dead), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["already_done"] == 0
    assert [r["id"] for r in read_jsonl(files["out"])] == ["p3#0"]
    # the lexical judgements were kept aside, and come back when their settings do
    result = runner.invoke(app, [*judge_args(files), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["already_done"] == 4
    assert files["out"].read_bytes() == before


def test_resume_judges_changed_responses_again(files: dict[str, Path], tmp_path: Path) -> None:
    """Same ids, other responses: the old scores must not be reported as the new responses' scores."""
    result = runner.invoke(app, [*judge_args(files), "--json"])
    assert result.exit_code == 0
    first = {r["id"]: r["score"] for r in read_jsonl(files["out"])}
    rows = read_jsonl(files["responses"])
    rows[0]["response"] = "nothing about the figure"  # p1#0 scored 1.0 before
    files["responses"] = write_jsonl(tmp_path / "responses_b.jsonl", rows)
    result = runner.invoke(app, [*judge_args(files), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["already_done"], summary["redone"], summary["written"]) == (3, 1, 1)
    second = {r["id"]: r["score"] for r in read_jsonl(files["out"])}
    assert first["p1#0"] == 1.0 and second["p1#0"] == 0.0
    assert {k: v for k, v in second.items() if k != "p1#0"} == {k: v for k, v in first.items() if k != "p1#0"}
    # the annotations are part of the input too
    annotated = read_jsonl(files["annotated"])
    annotated[1]["annotations"] = ["GE = 7"]
    write_jsonl(files["annotated"], annotated)
    summary = json.loads(runner.invoke(app, [*judge_args(files), "--json"]).stdout)
    assert summary["redone"] == 1 and {r["id"]: r["score"] for r in read_jsonl(files["out"])}["p2#0"] == 0.0


def test_inline_annotations_and_bad_lines(tmp_path: Path) -> None:
    responses = write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"id": "a", "response": "AB = 3", "annotations": ["AB = 3"]},
            {"id": "b", "response": "AB = 3"},
            {"id": "c", "response": 7, "annotations": ["x"]},
        ],
    )
    out = tmp_path / "j.jsonl"
    result = runner.invoke(app, ["judge", str(responses), "-o", str(out)])
    assert result.exit_code == 1
    assert f"{responses}:2: annotations: missing, and no --annotations file" in result.output
    assert f"{responses}:3: response: Input should be a valid string" in result.output
    assert not out.exists()
    result = runner.invoke(app, ["judge", str(responses), "-o", str(out), "--skip-invalid", "--json"])
    assert result.exit_code == 0
    assert [r["id"] for r in read_jsonl(out)] == ["a"]
    assert [r["line"] for r in read_jsonl(tmp_path / "j.rejected.jsonl")] == [2, 3]
    assert json.loads(result.stdout)["rejected"] == 2


def test_unknown_join_id_is_an_input_error(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        ["judge", str(files["responses"]), "--annotations", str(files["annotated"]), "-o", str(files["out"])],
    )
    assert result.exit_code == 1
    assert f"{files['responses']}:1: id: no annotated record with id 'p1#0'" in result.output


def test_failed_judgements_are_retried_by_the_next_run(files: dict[str, Path], tmp_path: Path) -> None:
    with FaultServer(script=["ok", "500", "500", "ok", "ok"], default="ok") as srv:
        args = judge_args(
            files,
            "--backend",
            "openai",
            "--base-url",
            srv.base_url,
            "--max-retries",
            "1",
            "--concurrency",
            "1",
            "--structured",
            "off",
            "--json",
        )
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "1 judgement(s) failed after retries" in result.output
        failed = read_jsonl(files["out"].with_name("judgements.failed.jsonl"))
        assert [f["id"] for f in failed] == ["p1#1"] and "HTTP 500" in failed[0]["error"]
        assert [r["id"] for r in read_jsonl(files["out"])] == ["p1#0", "p2#0", "p3#0"]

        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        rows = read_jsonl(files["out"])
        assert [r["id"] for r in rows] == ["p1#0", "p1#1", "p2#0", "p3#0"]  # back in input order
        assert all(r["error"] is None for r in rows)
        assert not files["out"].with_name("judgements.failed.jsonl").exists()
        assert len(srv.requests) == 5  # 3 + 2 failed tries, then the one retried item; nothing twice


def test_judge_prompt_file_is_sent_verbatim_and_recorded(files: dict[str, Path], tmp_path: Path) -> None:
    import hashlib

    from prcli.judge.prompt import SYSTEM_PROMPT

    prompt = tmp_path / "published.txt"
    prompt.write_text("Decide for each item.\nAnswer <info1>1 or 0</info1>, <info2>1 or 0</info2>, etc.\n")
    digest = hashlib.sha256(prompt.read_bytes()).hexdigest()
    with FaultServer() as srv:
        args = [*judge_args(files, "--backend", "openai", "--base-url", srv.base_url, "--no-cache")]
        result = runner.invoke(app, [*args, "--judge-prompt", str(prompt), "--json"])
        assert result.exit_code == 0, result.output
        assert {r["messages"][0]["content"] for r in srv.requests} == {prompt.read_text()}
        rows = read_jsonl(files["out"])
        assert {r["prompt_sha256"] for r in rows} == {digest}
        config = files["out"].with_name("judgements.config.yaml").read_text()
        assert f"judge_prompt_sha256: {digest}" in config

        # the same file again: all reused; an edited file: every judgement is made again
        sent = len(srv.requests)
        assert runner.invoke(app, [*args, "--judge-prompt", str(prompt)]).exit_code == 0
        assert len(srv.requests) == sent
        prompt.write_text(prompt.read_text() + "Judge presence only.\n")
        result = runner.invoke(app, [*args, "--judge-prompt", str(prompt), "--json"])
        assert json.loads(result.stdout)["redone"] == 4
        assert len(srv.requests) == sent + 3  # p3 has no annotations: no request

        # without the option, prcli's own wording, under its own hash
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        assert srv.requests[-1]["messages"][0]["content"] == SYSTEM_PROMPT
        own = hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest()
        assert {r["prompt_sha256"] for r in read_jsonl(files["out"])} == {own}


@pytest.mark.parametrize(
    ("text", "backend", "says"),
    [
        (None, "openai", "judge prompt file not found"),
        ("", "openai", "the judge prompt is empty"),
        ("Say yes or no.", "openai", "never mentions the <info1>1 or 0</info1> answer tags"),
        ("Answer <info1>1 or 0</info1>.", "lexical", "the lexical judge uses no prompt"),
    ],
)
def test_bad_judge_prompt_is_refused_before_anything_is_written(
    files: dict[str, Path], tmp_path: Path, text: str | None, backend: str, says: str
) -> None:
    prompt = tmp_path / "prompt.txt"
    if text is not None:
        prompt.write_text(text)
    result = runner.invoke(app, judge_args(files, "--backend", backend, "--judge-prompt", str(prompt)))
    assert result.exit_code == 1 and says in result.output, result.output
    assert not files["out"].exists()


def test_zero_policy_writes_failures(files: dict[str, Path]) -> None:
    with FaultServer(default="500") as srv:
        args = judge_args(
            files,
            "--backend",
            "openai",
            "--base-url",
            srv.base_url,
            "--max-retries",
            "0",
            "--failure-policy",
            "zero",
            "--json",
        )
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = read_jsonl(files["out"])
    assert [r["score"] for r in rows] == [0.0, 0.0, 0.0, None]
    assert all("HTTP 500" in r["error"] for r in rows[:3])


@pytest.mark.server
@pytest.mark.slow
def test_openai_backend_against_transformers_serve(tiny_server: dict, tmp_path: Path) -> None:
    """The round trip through a real server and a real (tiny, untrained) model, which rambles until
    `max_tokens`: every answer is cut short, so every judgement is a counted failure, retried and
    never cached; the server rejects vLLM's structured output field, so the judge falls back to
    free text."""
    cfg = JudgeConfig(
        backend="openai",
        base_url=tiny_server["base_url"],
        model=tiny_server["model"],
        max_tokens=16,
        timeout=60,
        max_retries=1,
        backoff=0.0,
        cache_dir=tmp_path / "cache",
    )
    judge = build_judge(cfg)
    items = [JudgeItem("a", ["AB = 3", "BC = 4"], "AB = 3"), JudgeItem("b", ["Angle B is 90 degrees"], "x")]
    first = judge.judge_many_sync(items[:1])
    rest = judge.judge_many_sync(items[1:])
    for j in first + rest:
        assert j.score is None and j.verdicts == [] and "cut at max_tokens=16" in (j.error or "")
    assert judge.client._mode == "off"  # type: ignore[attr-defined]
    assert judge.stats.failures == 2 and judge.stats.errors == {"truncated": 2}
    assert judge.client.stats.errors["truncated"] == 4  # type: ignore[attr-defined]  # each tried twice
    again = build_judge(cfg)
    again.judge_many_sync(items)
    assert again.stats.cache_hits == 0 and again.stats.failures == 2


@pytest.mark.server
@pytest.mark.slow
def test_pr_judge_cli_against_transformers_serve(tiny_server: dict, files: dict[str, Path]) -> None:
    args = judge_args(
        files,
        "--backend",
        "openai",
        "--base-url",
        tiny_server["base_url"],
        "--model",
        tiny_server["model"],
        "--max-tokens",
        "12",
        "--max-retries",
        "0",
        "--json",
    )
    result = runner.invoke(app, args)
    # the untrained model's answers are all cut at 12 tokens: failures to retry, not zero scores
    assert result.exit_code == 1, result.output
    rows = read_jsonl(files["out"])
    assert [r["id"] for r in rows] == ["p3#0"]  # no annotations: nothing to ask
    failed = read_jsonl(files["out"].with_name("judgements.failed.jsonl"))
    assert [r["id"] for r in failed] == ["p1#0", "p1#1", "p2#0"]
    assert all("truncated" in r["error"] for r in failed)


@pytest.mark.slow
def test_hf_backend_in_process(tiny_model_dir: Path, files: dict[str, Path]) -> None:
    args = judge_args(
        files,
        "--backend",
        "hf",
        "--model",
        str(tiny_model_dir),
        "--max-tokens",
        "8",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--json",
    )
    result = runner.invoke(app, args)
    # the untrained model never stops within 8 tokens: each answer is cut, a failure, not a score
    assert result.exit_code == 1, result.output
    assert [r["id"] for r in read_jsonl(files["out"])] == ["p3#0"]
    failed = read_jsonl(files["out"].with_name("judgements.failed.jsonl"))
    assert [r["id"] for r in failed] == ["p1#0", "p1#1", "p2#0"]
    assert all("cut at max_tokens=8" in r["error"] for r in failed)


def test_a_saved_config_runs_again_with_config(files: dict[str, Path]) -> None:
    first = runner.invoke(app, judge_args(files))
    assert first.exit_code == 0, first.output
    saved = files["out"].with_name("judgements.config.yaml")
    assert "judge_prompt_sha256" in saved.read_text()  # a run fact, recorded
    again = runner.invoke(app, ["judge", "--config", str(saved), "--json"])  # and skipped when read back
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["already_done"] == len(files["out"].read_text().splitlines())
