"""The scoring protocols of `pr eval` (rules, official, paper) against real local servers.

Every LLM call goes to a `prcli.testing.FaultServer` on 127.0.0.1 whose reply function plays the
extractor and the judges; MathVista's official pipeline is also checked against the official
verdicts on real model outputs, through a replay server.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import eval_fixtures as fx
from prcli.cli import app
from prcli.eval.protocols import PROMPTS, CallFailed, last_words, read_correct, read_true_false, read_zero_one
from prcli.testing import FaultServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import mathvista_parity

runner = CliRunner()


def user_text(request: dict[str, Any]) -> str:
    return str(request["messages"][-1]["content"])


def llm(url: str, *extra: str) -> list[str]:
    return [
        "--answer-judge-base-url",
        url,
        "--answer-judge-model",
        "judge",
        "--answer-judge-max-retries",
        "0",
        *extra,
    ]


def evaluate(bench: str, data: Path, out: Path, preds: dict[str, str], *extra: str) -> Any:
    path = out.parent / f"{out.name}-preds.jsonl"
    path.write_text("".join(json.dumps({"id": k, "response": v}) + "\n" for k, v in preds.items()))
    args = [
        "eval",
        "-b",
        bench,
        "--data",
        str(data),
        "-o",
        str(out),
        "--predictions",
        str(path),
        *extra,
        "--json",
    ]
    return runner.invoke(app, args)


def items(out: Path) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in map(json.loads, (out / "items.jsonl").read_text().splitlines())}


def paper_reply(request: dict[str, Any]) -> str:
    """Extraction: the last capital letter of the response, tagged; judgement: the extracted
    answer against the ground truth."""
    if request["messages"][0]["role"] == "system":
        text = user_text(request)
        response = re.search(r"\*\*Response\*\*: (.*)\n", text).group(1)
        truth = re.search(r"\*\*Ground Truth Answer\*\*: (.*)$", text).group(1)
        return "true" if response.strip() == truth.strip() else "false"
    response = user_text(request).rsplit("Model response: ", 1)[1]
    return f"<answer>{re.findall(r'[A-D]', response)[-1]}</answer>"


def test_paper_judges_every_item_both_ways_caches_and_resumes(tmp_path: Path) -> None:
    data, out = fx.mmstar(tmp_path), tmp_path / "out"
    # item 0: a tagged answer the rules would count right ("B") is judged against "B" -> true;
    # item 1: untagged prose, extracted by the LLM as "C", judged against "D" -> false
    preds = {"0": "<think>a dog</think><answer>B</answer>", "1": "I would say it is C"}
    with FaultServer(reply=paper_reply) as srv:
        result = evaluate("mmstar", data, out, preds, "--protocol", "paper", *llm(srv.base_url))
        assert result.exit_code == 0, result.output
        judged = [r for r in srv.requests if r["messages"][0]["role"] == "system"]
        assert len(judged) == 2 and len(srv.requests) == 3  # every item judged, one extraction
        assert any("**Choices**: A. a cat\nB. a dog" in user_text(r) for r in judged)
        assert all(r["temperature"] == 0.0 and r["max_tokens"] == 128 for r in srv.requests)
        summary = json.loads(result.stdout)
        assert summary["protocol"] == "paper" and summary["llm"]["model"] == "judge"
        assert set(summary["llm"]["prompts"]) == {"paper_extract_mathvista", "paper_judge"}
        got = items(out)
        assert (got["0"]["method"], got["0"]["correct"], got["0"]["judge_raw"]) == (
            "answer_tag",
            True,
            "true",
        )
        assert (got["1"]["method"], got["1"]["extracted"], got["1"]["correct"]) == (
            "llm_extraction",
            "C",
            False,
        )
        assert summary["accuracy"] == 50.0

        # the same command again: every item reused, no call
        assert evaluate("mmstar", data, out, preds, "--protocol", "paper", *llm(srv.base_url)).exit_code == 0
        assert len(srv.requests) == 3
        # started over: every answer comes from the cache
        again = evaluate("mmstar", data, out, preds, "--protocol", "paper", "--overwrite", *llm(srv.base_url))
        assert again.exit_code == 0 and len(srv.requests) == 3 and items(out) == got

    # a rule-scored item says so
    rules = evaluate("mmstar", data, tmp_path / "rules", preds)
    assert json.loads(rules.stdout)["protocol"] == "rules" and json.loads(rules.stdout)["llm"] is None


def test_official_mathvista_shortcuts_then_llm_extraction_then_the_normaliser(tmp_path: Path) -> None:
    data, out = fx.mathvista(tmp_path), tmp_path / "out"
    preds = {"1": "AB is five centimetres long.", "2": "B", "3": "It is roughly 2.46 units."}
    extractions = {"five": "5", "2.46": "2.46"}

    def reply(request: dict[str, Any]) -> str:
        text = user_text(request)
        return next(v for k, v in extractions.items() if k in text)

    with FaultServer(reply=reply) as srv:
        result = evaluate("mathvista", data, out, preds, "--protocol", "official", *llm(srv.base_url))
        assert result.exit_code == 0, result.output
        assert len(srv.requests) == 2  # "B" is one of the choices: the official rule shortcut, no call
        text = next(user_text(r) for r in srv.requests if "five" in user_text(r))
        assert text.startswith(PROMPTS["mathvista_extract"].block.strip())
        assert text.count("Extracted answer: ") == 6  # five worked examples, then the item's slot
        assert text.endswith("Model response: AB is five centimetres long.\n\nExtracted answer: ")
    got = items(out)
    assert [got[k]["method"] for k in "123"] == ["llm_extraction", "official_rule", "llm_extraction"]
    assert got["3"]["prediction"] == "2.5" and all(got[k]["correct"] for k in "123")
    summary = json.loads(result.stdout)
    assert summary["protocol"] == "official" and "MathVista" in summary["pipeline"]


def test_official_mathverse_extracts_the_last_30_words_then_judges_0_or_1(tmp_path: Path) -> None:
    data, out = fx.mathverse(tmp_path), tmp_path / "out"
    long = " ".join(f"w{i}" for i in range(40)) + " so the angle is 40°, option B"
    preds = {"1": long, "2": "The answer is A", "3": "x equals 2 root 3"}

    def reply(request: dict[str, Any]) -> str:
        text = user_text(request)
        if text.endswith("Extracted Answer: "):  # stage 1, answered with the label the official script strips
            found = {"option B": "B", "answer is A": "A", "2 root 3": "2\\sqrt{3}"}
            return "Extracted Answer: " + next(v for k, v in found.items() if k in text)
        extraction = text.rsplit("[Model_answer] : ", 1)[1].split("\n")[0]
        standard = text.rsplit("[Standard Answer]: ", 1)[1].split("\n")[0]
        return "1" if extraction == standard else "0"

    with FaultServer(reply=reply) as srv:
        result = evaluate("mathverse", data, out, preds, "--protocol", "official", *llm(srv.base_url))
        assert result.exit_code == 0, result.output
        assert len(srv.requests) == 6  # two stages for every item
        first = next(user_text(r) for r in srv.requests if "w39" in user_text(r))
        assert "w9 " not in first and f"Model response: '{last_words(long)}'" in first
    got = items(out)
    assert [got[k]["correct"] for k in "123"] == [True, False, True]
    assert got["1"]["extracted"] == "B" and got["1"]["judge_raw"] == "1"


def test_official_emma_judges_correct_or_incorrect(tmp_path: Path) -> None:
    data, out = fx.emma(tmp_path), tmp_path / "out"
    preds = {"Math_1": "Swap the second one: \\boxed{B}", "chem_1": ""}
    with FaultServer(
        reply=lambda r: "Correct" if "\\boxed{B}\nAnswer: B" in user_text(r) else "Incorrect"
    ) as srv:
        result = evaluate("emma", data, out, preds, "--protocol", "official", *llm(srv.base_url))
        assert result.exit_code == 0, result.output
        assert (
            len(srv.requests) == 1
        )  # an empty response is wrong without a call, as the official script has it
    got = items(out)
    assert (got["Math_1"]["correct"], got["Math_1"]["method"]) == (True, "llm_judge")
    assert (got["chem_1"]["correct"], got["chem_1"]["method"]) == (False, "empty")


def test_official_on_a_rule_based_benchmark_says_so_and_calls_nothing(tmp_path: Path) -> None:
    data = fx.mmstar(tmp_path)
    with FaultServer() as srv:
        result = evaluate(
            "mmstar", data, tmp_path / "o", {"0": "B", "1": "C"}, "--protocol", "official", *llm(srv.base_url)
        )
        assert result.exit_code == 0 and srv.requests == []
    summary = json.loads(result.stdout)
    assert (
        summary["protocol"] == "official" and "rule-based" in summary["pipeline"] and summary["llm"] is None
    )
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("published text")
    result = evaluate(
        "mmstar", data, tmp_path / "o2", {"0": "B"}, "--protocol", "official", "--extract-prompt", str(prompt)
    )
    assert result.exit_code == 1 and "official scoring is rule-based" in result.output
    assert not (tmp_path / "o2").exists()
    result = evaluate("mmstar", data, tmp_path / "o3", {"0": "B"}, "--extract-prompt", str(prompt))
    assert result.exit_code == 1 and "need --protocol official or paper" in result.output


def test_extract_prompt_replaces_the_examples_and_redoes_the_items(tmp_path: Path) -> None:
    data, out = fx.mathvista(tmp_path), tmp_path / "out"
    preds = {"1": "AB is five centimetres long."}
    prompt = tmp_path / "published.txt"
    prompt.write_text("THE PUBLISHED DEMO PROMPT\n")
    with FaultServer(reply=lambda r: "5") as srv:
        first = evaluate("mathvista", data, out, preds, "--protocol", "official", *llm(srv.base_url))
        second = evaluate(
            "mathvista",
            data,
            out,
            preds,
            "--protocol",
            "official",
            "--extract-prompt",
            str(prompt),
            *llm(srv.base_url),
        )
        assert first.exit_code == 0 and second.exit_code == 0, second.output
        assert len(srv.requests) == 2  # another prompt: the item was redone, not reused
        assert user_text(srv.requests[1]).startswith("THE PUBLISHED DEMO PROMPT\n\nHint: ")
    hashes = [json.loads(r.stdout)["llm"]["prompts"]["mathvista_extract"] for r in (first, second)]
    assert (
        hashes[0] != hashes[1] and json.loads(second.stdout)["redone"] == 3
    )  # the two without a prediction too


@pytest.mark.parametrize(
    ("fault", "says"),
    [("down", "connection error"), ("garbage", "the judgement is not true or false: 'maybe'")],
)
def test_a_failing_llm_fails_its_items_which_the_next_run_retries(
    tmp_path: Path, fault: str, says: str
) -> None:
    data, out = fx.mmstar(tmp_path), tmp_path / "out"
    preds = {"0": "<answer>B</answer>", "1": "<answer>D</answer>"}
    if fault == "down":
        result = evaluate("mmstar", data, out, preds, "--protocol", "paper", *llm("http://127.0.0.1:9/v1"))
    else:
        with FaultServer(reply=lambda r: "maybe") as srv:
            result = evaluate("mmstar", data, out, preds, "--protocol", "paper", *llm(srv.base_url))
    assert result.exit_code == 1 and "2 item(s) failed after retries" in result.output
    assert f"paper_judge: {says}" in " ".join(result.output.split())
    assert (out / "items.jsonl").read_text() == ""  # nothing written for a failed item
    assert [json.loads(x)["id"] for x in (out / "failed.jsonl").read_text().splitlines()] == ["0", "1"]
    with FaultServer(reply=lambda r: "true") as srv:
        result = evaluate("mmstar", data, out, preds, "--protocol", "paper", *llm(srv.base_url))
        assert result.exit_code == 0, result.output
    assert list(items(out)) == ["0", "1"] and not (out / "failed.jsonl").exists()


def test_the_judgement_readers() -> None:
    assert read_zero_one("1") and not read_zero_one(" 0.") and read_zero_one("Judgement: 1")
    assert read_correct("Correct") and not read_correct("incorrect.")
    assert read_true_false("True.") and not read_true_false("**false**")
    for read, text in ((read_zero_one, "yes"), (read_correct, "probably"), (read_true_false, "")):
        with pytest.raises(CallFailed):
            read(text)


@pytest.mark.parametrize("model", mathvista_parity.MODELS)
def test_official_mathvista_through_a_replay_server_matches_the_official_verdicts(
    model: str, tmp_path: Path
) -> None:
    """A fast subset of benchmarks/mathvista_parity.py (the full 3 x 1000 items: benchmarks/RESULTS.md)."""
    outputs = json.loads((mathvista_parity.OUTPUTS / model / "output.json").read_text())
    pids = list(outputs)[::25]  # 40 items, every kind of question among them
    same, n, extracted, _ = mathvista_parity.agreement(model, "official", tmp_path, pids)
    assert same == n == 40 and extracted > 0


def test_an_empty_extraction_fails_the_item_and_is_not_cached(tmp_path: Path) -> None:
    """MathVista's normaliser would map "" to the nearest choice and score it: a broken extractor
    would give a plausible number with exit 0."""
    data, out = fx.mathvista(tmp_path), tmp_path / "out"
    preds = {"1": "AB is five centimetres long.", "2": "B", "3": "It is roughly 2.46 units."}
    cache = ["--cache-dir", str(tmp_path / "cache")]
    with FaultServer(reply=lambda r: "  ") as srv:
        result = evaluate("mathvista", data, out, preds, "--protocol", "official", *llm(srv.base_url), *cache)
    assert result.exit_code == 1 and "the extraction is empty" in " ".join(result.output.split())
    assert sorted(items(out)) == ["2"]  # the rule shortcut needs no LLM
    extractions = {"five": "5", "2.46": "2.46"}
    with FaultServer(reply=lambda r: next(v for k, v in extractions.items() if k in user_text(r))) as srv:
        result = evaluate("mathvista", data, out, preds, "--protocol", "official", *llm(srv.base_url), *cache)
        assert result.exit_code == 0, result.output
        assert len(srv.requests) == 2  # asked again: the empty answers were never cached
    assert all(item["correct"] for item in items(out).values())


def test_items_scored_by_other_scoring_code_are_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prcli.eval.run as run_module

    data, out = fx.mmstar(tmp_path), tmp_path / "out"
    preds = {"0": "<answer>B</answer>", "1": "<answer>D</answer>"}
    assert evaluate("mmstar", data, out, preds).exit_code == 0
    assert json.loads(evaluate("mmstar", data, out, preds).stdout)["reused"] == 2
    version = run_module.scorer_version(run_module.get_benchmark("mmstar"))
    assert version != run_module.scorer_version(run_module.get_benchmark("mathvista"))  # per benchmark
    monkeypatch.setattr(run_module, "scorer_version", lambda bench: version + " (edited)")
    assert json.loads(evaluate("mmstar", data, out, preds).stdout)["redone"] == 2
