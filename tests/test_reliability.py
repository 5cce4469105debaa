"""Reliability: faults on every LLM-calling stage, interrupts, a corpus of bad inputs, secrets.

Every LLM call goes to a real HTTP server on 127.0.0.1 (`prcli.testing.FaultServer`) that fails
in the ways real servers do. After a faulty run, a re-run against a healthy server must give
exactly the output an undisturbed run gives: nothing lost, nothing twice.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import free_port, make_image
from prcli import jsonl
from prcli.cli import app
from prcli.testing import FaultServer, all_present

runner = CliRunner()
PR = str(Path(sys.executable).parent / "pr")
FAULTS = ["down", "dies", "500", "hang", "malformed", "truncated"]


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def reply(request: dict) -> str:
    """Plays every role: teacher (an image in the user turn), extractor, judge, eval judge, VLM."""
    messages = request["messages"]
    text = json.dumps(messages)
    if messages[0]["role"] == "system" and "<info1>" in str(messages[-1]["content"]):
        return all_present(request)  # the perception judge
    if messages[0]["role"] == "system" and "visual key information" in messages[0]["content"]:
        cot = messages[-1]["content"]
        return "\n".join(
            f"<info{i}>{f}</info{i}>" for i, f in enumerate(re.findall(r"[A-Z]{2} = \d+", cot), 1)
        )
    if messages[0]["role"] == "system" and "**Ground Truth Answer**" in text:
        return "true"  # the paper protocol's judge
    if "image_url" in text and "Solve the problem" in text:
        return "From the figure, AB = 3 and BC = 4. \\boxed{5}"  # the teacher
    return "I think the answer is clearly the second one."  # the evaluated VLM: an undecided answer


class Stage:
    """One LLM-calling command: its inputs, its arguments for a server, and its output to compare."""

    def __init__(self, folder: Path, n: int = 6):
        self.folder = folder
        self.n = n
        for i in range(n):
            make_image(folder / f"{i}.png", color=(30 * i, 60, 90))

    def args(self, url: str, out: Path) -> list[str]:
        raise NotImplementedError

    def output(self, out: Path) -> list[dict]:
        raise NotImplementedError


class Annotate(Stage):
    def __init__(self, folder: Path):
        super().__init__(folder)
        self.src = write(
            folder / "problems.jsonl",
            [
                {
                    "id": f"p{i}",
                    "question": f"<image>Triangle {i}: hypotenuse?",
                    "images": [f"{i}.png"],
                    "answer": "5",
                }
                for i in range(self.n)
            ],
        )

    def args(self, url: str, out: Path) -> list[str]:
        return [
            "annotate",
            str(self.src),
            "-o",
            str(out / "annotated.jsonl"),
            "--teacher",
            "openai",
            "--teacher-base-url",
            url,
            "--teacher-model",
            "t",
            "--extractor",
            "openai",
            "--extractor-base-url",
            url,
            "--extractor-model",
            "e",
            *[
                arg
                for role in ("teacher", "extractor")
                for option, value in (("timeout", "0.5"), ("max-retries", "1"), ("concurrency", "2"))
                for arg in (f"--{role}-{option}", value)
            ],
            "--no-cache",
        ]

    def output(self, out: Path) -> list[dict]:
        rows = lines(out / "annotated.jsonl")
        for r in rows:
            r["provenance"].pop("created")
        return rows


class Judge(Stage):
    def __init__(self, folder: Path):
        super().__init__(folder)
        self.src = write(
            folder / "responses.jsonl",
            [
                {"id": f"r{i}", "response": f"AB = {i}", "annotations": [f"AB = {i}", "BC = 4"]}
                for i in range(self.n)
            ],
        )

    def args(self, url: str, out: Path) -> list[str]:
        return [
            "judge",
            str(self.src),
            "-o",
            str(out / "judgements.jsonl"),
            "--backend",
            "openai",
            "--base-url",
            url,
            "--model",
            "j",
            "--timeout",
            "0.5",
            "--max-retries",
            "1",
            "--no-cache",
            "--structured",
            "off",
            "--concurrency",
            "2",
        ]

    def output(self, out: Path) -> list[dict]:
        return lines(out / "judgements.jsonl")


class EvalGenerate(Stage):
    def __init__(self, folder: Path):
        super().__init__(folder)
        self.src = write(
            folder / "mmstar.jsonl",
            [
                {
                    "index": i,
                    "question": "What?\nOptions: A: x, B: y, C: z, D: w",
                    "image": f"{i}.png",
                    "answer": "B",
                    "category": "c",
                    "l2_category": "l",
                }
                for i in range(self.n)
            ],
        )

    def args(self, url: str, out: Path) -> list[str]:
        return [
            "eval",
            "-b",
            "mmstar",
            "--data",
            str(self.src),
            "-o",
            str(out / "eval"),
            "--backend",
            "openai",
            "--base-url",
            url,
            "-m",
            "vlm",
            "--timeout",
            "0.5",
            "--max-retries",
            "1",
            "--concurrency",
            "2",
        ]

    def output(self, out: Path) -> list[dict]:
        return lines(out / "eval" / "items.jsonl")


class EvalPaper(EvalGenerate):
    """Saved responses judged by the paper protocol's LLM (the answer block, then a true/false judgement)."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.preds = write(
            folder / "preds.jsonl",
            [{"id": str(i), "response": "<answer>the second one</answer>"} for i in range(self.n)],
        )

    def args(self, url: str, out: Path) -> list[str]:
        return [
            "eval",
            "-b",
            "mmstar",
            "--data",
            str(self.src),
            "-o",
            str(out / "eval"),
            "--predictions",
            str(self.preds),
            "--protocol",
            "paper",
            "--no-cache",
            "--answer-judge-base-url",
            url,
            "--answer-judge-max-retries",
            "1",
            "--answer-judge-timeout",
            "0.5",
            "--answer-judge-concurrency",
            "2",
        ]


STAGES: dict[str, Callable[[Path], Stage]] = {
    "annotate": Annotate,
    "judge": Judge,
    "eval-generate": EvalGenerate,
    "eval-paper": EvalPaper,
}


def faulty_server(fault: str) -> FaultServer:
    if fault == "dies":
        return FaultServer(reply=reply, die_after=3)
    return FaultServer(reply=reply, default=fault, hang_seconds=3)


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stage_name", list(STAGES))
def test_faults_then_resume_equals_an_undisturbed_run(tmp_path: Path, stage_name: str, fault: str) -> None:
    stage = STAGES[stage_name](tmp_path)
    with FaultServer(reply=reply) as healthy:
        reference = tmp_path / "reference"
        result = runner.invoke(app, stage.args(healthy.base_url, reference))
        assert result.exit_code == 0, result.output
    expected = stage.output(reference)
    assert len(expected) == stage.n

    out = tmp_path / "faulty"
    if fault == "down":
        url = f"http://127.0.0.1:{free_port()}/v1"
        result = runner.invoke(app, stage.args(url, out))
        n_requests = None
    else:
        with faulty_server(fault) as srv:
            started = time.monotonic()
            result = runner.invoke(app, stage.args(srv.base_url, out))
            elapsed = time.monotonic() - started
            n_requests = len(srv.requests)
        assert elapsed < 60
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output  # no crash
    assert result.exit_code == 1 and "failed after retries" in result.output, result.output
    if n_requests is not None:  # bounded retries: at most 2 attempts per model call
        calls_per_item = 2 if stage_name == "annotate" else 1
        assert n_requests <= 2 * calls_per_item * stage.n

    with FaultServer(reply=reply) as healthy:
        result = runner.invoke(app, stage.args(healthy.base_url, out))
        assert result.exit_code == 0, result.output
    assert stage.output(out) == expected


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["dies", "500"])
def test_training_survives_a_failing_judge(tiny_model_dir: Path, tmp_path: Path, fault: str) -> None:
    """A judge that fails after answering part of the first step (a judge failing the whole first
    step stops the run: tests/test_hostile_train.py)."""
    rows = []
    for i in range(4):
        make_image(tmp_path / f"{i}.png", size=(56, 56))
        rows.append(
            {
                "id": f"p{i}",
                "question": "<image>Find x.",
                "images": [f"{i}.png"],
                "answer": "1",
                "annotations": ["AB = 1"],
            }
        )
    data = write(tmp_path / "a.jsonl", rows)
    server = (
        faulty_server(fault)
        if fault == "dies"
        else FaultServer(reply=reply, script=["ok"] * 4, default=fault)
    )
    with server as srv:
        args = [
            "train",
            "-m",
            str(tiny_model_dir),
            "--data",
            str(data),
            "-o",
            str(tmp_path / "run"),
            "--prompts-per-step",
            "2",
            "--num-generations",
            "4",
            "--max-completion-length",
            "8",
            "--max-steps",
            "2",
            "--min-pixels",
            "3136",
            "--max-pixels",
            "3136",
            "--judge",
            "openai",
            "--judge-base-url",
            srv.base_url,
            "--judge-max-retries",
            "1",
            "--judge-timeout",
            "1",
            "--no-judge-cache",
            "--json",
        ]
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = lines(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    failures = sum(m["judge/failures"] for m in metrics)
    assert failures == json.loads(result.stdout)["judge_failures"] > 0
    if fault == "dies":  # the first requests were answered, the rest failed
        assert failures < 16


# ----------------------------------------------------------------------------- interrupts


def interrupt_when(path_of_output: Path, proc: subprocess.Popen, at_lines: int, sig: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if path_of_output.exists() and path_of_output.read_text().count("\n") >= at_lines:
            break
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be interrupted")
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("stage_name", ["judge", "eval-generate"])
def test_interrupt_anywhere_then_resume(tmp_path: Path, stage_name: str, sig: int) -> None:
    stage = STAGES[stage_name](tmp_path)
    stage.n = 30
    if stage_name == "judge":
        stage.src = write(
            tmp_path / "many.jsonl",
            [
                {"id": f"r{i:02d}", "response": f"AB = {i}", "annotations": [f"AB = {i}", "BC = 4"]}
                for i in range(30)
            ],
        )
        produced = tmp_path / "out" / "judgements.jsonl"
    else:
        for i in range(30):
            make_image(tmp_path / f"{i}.png")
        stage.src = write(
            tmp_path / "many.jsonl",
            [
                {
                    "index": i,
                    "question": "What?\nOptions: A: x, B: y",
                    "image": f"{i}.png",
                    "answer": "B",
                    "category": "c",
                    "l2_category": "l",
                }
                for i in range(30)
            ],
        )
        produced = tmp_path / "out" / "eval" / "items.jsonl"
    at = random.Random(f"{stage_name}{sig}").randint(3, 20)  # a random point, fixed per case
    with FaultServer(reply=reply, latency=0.03) as srv:
        reference = tmp_path / "reference"
        assert runner.invoke(app, stage.args(srv.base_url, reference)).exit_code == 0
        proc = subprocess.Popen([PR, *stage.args(srv.base_url, tmp_path / "out")[0:]], stderr=subprocess.PIPE)
        interrupt_when(produced, proc, at, sig)
        assert proc.returncode != 0
        if sig == signal.SIGINT:
            err = proc.stderr.read().decode() if proc.stderr else ""
            assert "interrupted" in err and "Traceback" not in err
        partial = produced.read_bytes()
        assert partial.count(b"\n") < 30 and (not partial or partial.endswith(b"\n") or sig == signal.SIGKILL)
        result = runner.invoke(app, stage.args(srv.base_url, tmp_path / "out"))
        assert result.exit_code == 0, result.output
    assert stage.output(tmp_path / "out") == stage.output(reference)


# ----------------------------------------------------------------------------- bad inputs


def bad_files(
    folder: Path, good: dict, key: str = "id", wrong: dict | None = None
) -> dict[str, tuple[Path, str]]:
    """name -> (file, text the error must contain). `good` is one valid record; `wrong` mistypes a field."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}

    def f(name: str, content: bytes, expect: str) -> None:
        path = folder / f"{name}.jsonl"
        path.write_bytes(content)
        out[name] = (path, expect.format(path=path))

    line = json.dumps(good).encode()
    other = json.dumps({**good, key: "other"}).encode()
    wrong_line = json.dumps({**good, **(wrong or {key: 7})}).encode()
    f("empty", b"", "{path}: empty file")
    f("garbage", bytes(range(256)) * 3, "{path}:1: ")
    f(
        "huge",
        line + b"\n" + json.dumps({**good, "pad": "x" * 3000}).encode() + b"\n",
        "{path}:2: line is longer than",
    )
    f("wrong_type", line + b"\n" + wrong_line + b"\n", "{path}:2: " + next(iter(wrong or {key: 7})))
    f("duplicate", line + b"\n" + other + b"\n" + line + b"\n", "{path}:3: " + key + ": duplicate")
    f("non_utf8", line + b"\n" + line.replace(b'"', b'"\xff', 1) + b"\n", "{path}:2: not valid UTF-8")
    f("bad_json", line + b"\n{" + b"\n", "{path}:2: invalid JSON")
    f("parquet", b"PAR1" + bytes(range(256)) * 3 + b"PAR1", "{path}: expected a JSONL file")
    return out


def problem_record(folder: Path, image: str = "ok.png") -> dict:
    make_image(folder / "ok.png")
    return {
        "id": "a",
        "question": "<image>q",
        "images": [image],
        "answer": "1",
        "cot": "AB = 1. \\boxed{1}",
        "annotations": ["AB = 1"],
    }


def image_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    record = problem_record(folder)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n0000")
    missing = write(folder / "missing_image.jsonl", [{**record, "images": ["nope.png"]}])
    corrupt = write(folder / "corrupt_image.jsonl", [{**record, "images": ["corrupt.png"]}])
    return {
        "missing_image": (missing, f"{missing}:1: images[0]: image file not found"),
        "corrupt_image": (corrupt, f"{corrupt}:1: images[0]: image file cannot be decoded"),
    }


CORPUS = ["empty", "garbage", "huge", "wrong_type", "duplicate", "non_utf8", "bad_json", "parquet"]


@pytest.fixture
def short_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 2000)


def as_dataset(case: tuple[Path, str], name: str) -> tuple[Path, str]:
    """Stages that read datasets take a parquet file for one (whatever its name): a broken one is that."""
    path, expect = case
    return (path, f"{path}: the dataset cannot be loaded") if name == "parquet" else (path, expect)


def run_bad(args: list[str], expect: str, outputs: list[Path]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert expect in result.output, result.output
    for path in outputs:
        assert not path.exists(), f"{path} was written"


@pytest.mark.parametrize("case", [*CORPUS, "missing_image", "corrupt_image"])
def test_bad_problems_for_annotate_and_train(
    tmp_path: Path, case: str, short_lines: None, tiny_model_dir: Path
) -> None:
    files = {**bad_files(tmp_path / "bad", problem_record(tmp_path / "bad")), **image_cases(tmp_path / "bad")}
    path, expect = as_dataset(files[case], case)
    out = tmp_path / "out"
    run_bad(["annotate", str(path), "-o", str(out / "a.jsonl")], expect, [out])
    run_bad(["train", "-m", str(tiny_model_dir), "--data", str(path), "-o", str(out / "run")], expect, [out])


@pytest.mark.parametrize("case", CORPUS)
def test_bad_responses_for_judge(tmp_path: Path, case: str, short_lines: None) -> None:
    path, expect = as_dataset(
        bad_files(tmp_path, {"id": "r", "response": "AB = 1", "annotations": ["AB = 1"]})[case], case
    )
    run_bad(["judge", str(path), "-o", str(tmp_path / "out" / "j.jsonl")], expect, [tmp_path / "out"])


@pytest.mark.parametrize("case", CORPUS)
def test_bad_predictions_for_eval(tmp_path: Path, case: str, short_lines: None) -> None:
    data = write(
        tmp_path / "mmstar.jsonl",
        [
            {
                "index": 0,
                "question": "q\nOptions: A: x, B: y",
                "image": None,
                "answer": "A",
                "category": "c",
                "l2_category": "l",
            }
        ],
    )
    path, expect = bad_files(tmp_path / "preds", {"id": "0", "response": "A"}, wrong={"response": 5})[case]
    run_bad(
        [
            "eval",
            "-b",
            "mmstar",
            "--data",
            str(data),
            "--predictions",
            str(path),
            "-o",
            str(tmp_path / "out"),
        ],
        expect,
        [tmp_path / "out"],
    )


@pytest.mark.parametrize("case", ["garbage", "bad_json", "non_utf8", "empty", "parquet"])
def test_bad_items_for_mcnemar(tmp_path: Path, case: str, short_lines: None) -> None:
    good = write(tmp_path / "good.jsonl", [{"id": "a", "correct": True}])
    path, expect = bad_files(tmp_path / "bad", {"id": "a", "correct": True})[case]
    run_bad(["mcnemar", str(good), str(path)], expect, [])


def test_bad_benchmark_rows_stop_eval_before_any_output(tmp_path: Path) -> None:
    data = write(
        tmp_path / "mmstar.jsonl",
        [
            {
                "index": 0,
                "question": "q\nOptions: A: x, B: y",
                "image": None,
                "answer": "A",
                "category": "c",
                "l2_category": "l",
            },
            {"question": "no index"},
        ],
    )
    preds = write(tmp_path / "p.jsonl", [{"id": "0", "response": "A"}])
    run_bad(
        [
            "eval",
            "-b",
            "mmstar",
            "--data",
            str(data),
            "--predictions",
            str(preds),
            "-o",
            str(tmp_path / "out"),
        ],
        f"{data}:2: not a mmstar record",
        [tmp_path / "out"],
    )


# ----------------------------------------------------------------------------- secrets


SECRET = "sk-prcli-test-5f1d0c9e8a7b"


@pytest.mark.slow
def test_api_keys_never_leak(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Keys reach the server, and appear nowhere else: not in output, logs, configs or errors."""
    env_name = "PRCLI_TEST_SECRET_KEY"
    os.environ[env_name] = SECRET
    try:
        transcripts = []
        annotate, judge, evaluate = (
            Annotate(tmp_path / "a"),
            Judge(tmp_path / "j"),
            EvalGenerate(tmp_path / "e"),
        )
        for mode in ("ok", "401"):
            with FaultServer(reply=reply, default=mode) as srv:
                out = tmp_path / f"out-{mode}"
                runs = [
                    [
                        *annotate.args(srv.base_url, out),
                        "--teacher-api-key-env",
                        env_name,
                        "--extractor-api-key-env",
                        env_name,
                    ],
                    [*judge.args(srv.base_url, out), "--api-key-env", env_name],
                    [*evaluate.args(srv.base_url, out), "--api-key-env", env_name],
                    [
                        "train",
                        "-m",
                        str(tiny_model_dir),
                        "--data",
                        str(annotate.src.with_name("train.jsonl")),
                        "-o",
                        str(out / "train"),
                        "--prompts-per-step",
                        "2",
                        "--num-generations",
                        "2",
                        "--max-completion-length",
                        "4",
                        "--max-steps",
                        "1",
                        "--min-pixels",
                        "3136",
                        "--max-pixels",
                        "3136",
                        "--judge",
                        "openai",
                        "--judge-base-url",
                        srv.base_url,
                        "--judge-api-key-env",
                        env_name,
                        "--judge-max-retries",
                        "0",
                    ],
                ]
                write(
                    annotate.src.with_name("train.jsonl"),
                    [
                        {
                            "id": f"t{i}",
                            "question": "<image>q",
                            "images": [f"{i}.png"],
                            "answer": "1",
                            "annotations": ["AB = 1"],
                        }
                        for i in range(2)
                    ],
                )
                for args in runs:
                    proc = subprocess.run([PR, *args], capture_output=True, text=True, timeout=300)
                    transcripts.append(proc.stdout + proc.stderr)
                assert srv.auth and all(a == f"Bearer {SECRET}" for a in srv.auth)  # the key was really sent
        echoed = [
            p for p in tmp_path.rglob("*.failed.jsonl") if "Incorrect API key provided: ***" in p.read_text()
        ]
        assert echoed  # the server's echo of the key reached our error records, scrubbed
        for text in transcripts:
            assert SECRET not in text
        for path in tmp_path.rglob("*"):
            if path.is_file() and path.suffix in (".jsonl", ".json", ".yaml", ".txt", ".log", ""):
                assert SECRET.encode() not in path.read_bytes(), path
    finally:
        del os.environ[env_name]
