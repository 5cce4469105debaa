"""The hostile corpus: every case in `tests/hostile/*.yaml` is an input a careless or hostile user
gives prcli, with the outcome prcli owes them. One parametrised test runs them all, so a new stage
gets the same treatment by adding rows, not code.

A case:

    name: judge-resume-other-responses      # unique
    issue: "12.1"                           # where it came from
    files: {name: text}                     # written into the case folder first ({tmp} is that folder)
    build: [builder, ...]                   # functions of tests/hostile/builders.py, for inputs text cannot hold
    steps:                                  # commands run in order, in process, through the real CLI
      - run: [judge, "{tmp}/r.jsonl", -o, "{tmp}/out.jsonl", --json]
        exit: 0                             # the exit code owed
        says: [text, ...]                   # must appear in the output (stdout and stderr together)
        never_says: [text, ...]             # must not ("Traceback" is always checked)
        json: {key: value}                  # a subset of the --json result
        rows: {path: [{field: value}]}      # a subset of each JSONL row, in order
        exists: [path]                      # paths that must exist afterwards
        absent: [path]                      # paths that must not (nothing partial is left)
        write: {name: text}                 # files (re)written before this step runs

`{tiny_model}` in a case builds the tiny Qwen2.5-VL (the session fixture) and stands for its folder;
`{dead_url}` is the URL of a port on 127.0.0.1 where nothing listens.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from hostile import builders
from prcli.cli import app

HERE = Path(__file__).parent / "hostile"
CASES = [case for f in sorted(HERE.glob("*.yaml")) for case in yaml.safe_load(f.read_text(encoding="utf-8"))]
runner = CliRunner()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {_fill(k, names): _fill(v, names) for k, v in value.items()}
    return value


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(want, dict) and isinstance(got, dict):
        return all(k in got and _same(got[k], v) for k, v in want.items())
    return bool(got == want)


def test_case_names_are_unique() -> None:
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hostile_case(case: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    names = {"tmp": str(tmp_path), "dead_url": _dead_url()}
    if "{tiny_model}" in json.dumps(case):
        names["tiny_model"] = str(request.getfixturevalue("tiny_model_dir"))
    case = _fill(case, names)
    for name, text in (case.get("files") or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    for builder in case.get("build") or []:
        getattr(builders, builder)(tmp_path)
    for i, step in enumerate(case["steps"]):
        for name, text in (step.get("write") or {}).items():
            (tmp_path / name).write_text(text, encoding="utf-8")
        result = runner.invoke(app, [str(a) for a in step["run"]])
        where = f"step {i + 1} ({' '.join(map(str, step['run']))})"
        output = result.output
        assert result.exit_code == step["exit"], (
            f"{where}: exit {result.exit_code}\n{output}\n{result.exception!r}"
        )
        assert "Traceback" not in output, f"{where}: a traceback\n{output}"
        flat = " ".join(output.split())  # rich wraps long lines
        for text in step.get("says") or []:
            assert " ".join(text.split()) in flat, f"{where}: does not say {text!r}\n{output}"
        for text in step.get("never_says") or []:
            assert text not in output, f"{where}: says {text!r}\n{output}"
        if "json" in step:
            got = json.loads(result.stdout)
            for key, want in step["json"].items():
                assert _same(got.get(key), want), f"{where}: {key} = {got.get(key)!r}, expected {want!r}"
        for path, want_rows in (step.get("rows") or {}).items():
            rows = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]
            assert len(rows) == len(want_rows), f"{where}: {path} has {len(rows)} rows\n{rows}"
            for got, want in zip(rows, want_rows, strict=True):
                assert _same(got, want), f"{where}: {path}: {got} does not match {want}"
        for path in step.get("exists") or []:
            assert Path(path).exists(), f"{where}: {path} is missing"
        for path in step.get("absent") or []:
            assert not Path(path).exists(), f"{where}: {path} was left behind"
