"""Agreement of `pr eval`'s scorers with the official ones on real model outputs (tests/data).

    python benchmarks/eval_parity.py            # prints a markdown report

For MathVista it scores each output twice: its official GPT `extraction` through the official
normaliser and comparator (`score_extracted`, the `official` protocol's second half: it must reproduce
`true_false`), and the full `response` with the rule-based extractor standing in for GPT extraction
(how often the two verdicts agree; "no answer": responses the rules find no answer in). For EMMA,
MMMU and MMMU-Pro it scores the full responses with the official rule-based parsers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prcli.eval import get_benchmark

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def verdict(value: object) -> bool:
    return value in (True, "True")


def mathvista() -> list[str]:
    bench = get_benchmark("mathvista")
    lines = [
        "| model | official accuracy | extraction -> same verdict | full response, rules -> same verdict | rules accuracy | rules: no answer |",
        "|---|---|---|---|---|---|",
    ]
    for model in ("bard", "gpt4_2shot_solution", "llava_llama_2_13b"):
        path = DATA / "mathvista" / "outputs" / model / "output.json"
        outputs = json.loads(path.read_text())
        samples = {s.id: s for s in bench.load(path, decode_images=False)}
        same_x = same_r = rules_correct = official = no_answer = 0
        for pid, o in outputs.items():
            task = bench.score_input(samples[pid])
            off = verdict(o["true_false"])
            official += off
            same_x += bench.score_extracted(task, o["extraction"])["correct"] == off
            ours = bench.score(task, o["response"])
            same_r += ours["correct"] == off
            rules_correct += ours["correct"]
            no_answer += ours["prediction"] is None
        n = len(outputs)
        lines.append(
            f"| {model} | {100 * official / n:.1f} | {same_x}/{n} ({100 * same_x / n:.1f}%) | "
            f"{same_r}/{n} ({100 * same_r / n:.1f}%) | {100 * rules_correct / n:.1f} | {no_answer} |"
        )
    return lines


def emma() -> list[str]:
    bench = get_benchmark("emma")
    path = DATA / "emma" / "gemini-2.0-flash-thinking_Math_CoT.json"
    outputs = json.loads(path.read_text())
    official = json.loads((DATA / "emma" / "gemini-2.0-flash-thinking_Math_CoT_result.json").read_text())
    same = correct = 0
    for s in bench.load(path, decode_images=False):
        ours = bench.score(bench.score_input(s), outputs[s.id]["response"])["correct"]
        same += ours == verdict(outputs[s.id]["true_false"])
        correct += ours
    return [
        f"EMMA (gemini-2.0-flash-thinking, Math CoT): official {official['average']['correct']}/100, ours {correct}/100; "
        f"same verdict on {same}/100 items."
    ]


def mmmu() -> list[str]:
    bench = get_benchmark("mmmu")
    preds = json.loads((DATA / "mmmu" / "llava1.5_13b_val.json").read_text())
    items = [
        {**bench.score(bench.score_input(s), preds[s.id]), **s.fields}
        for s in bench.load(DATA / "mmmu" / "answer_dict_val.json", decode_images=False)
    ]
    summary = bench.aggregate(items)
    per = ", ".join(f"{k} {v['accuracy']}" for k, v in summary["breakdown"]["discipline"].items())
    return [
        f"MMMU (LLaVA-1.5-13B example outputs, validation): {summary['correct']}/900 = {summary['accuracy']} "
        f"({per}); random fallbacks: {sum(i['method'] == 'random' for i in items)}."
    ]


def mmmu_pro() -> list[str]:
    bench = get_benchmark("mmmu_pro")
    path = DATA / "mmmu_pro" / "gpt-4o_standard10_cot.jsonl"
    responses = {json.loads(x)["id"]: json.loads(x)["response"] for x in path.read_text().splitlines()}
    items = [
        {**bench.score(bench.score_input(s), responses[s.fields["native_id"]]), **s.fields}
        for s in bench.load(path, decode_images=False)
    ]
    summary = bench.aggregate(items)
    return [
        f"MMMU-Pro standard-10 (GPT-4o CoT outputs): {summary['correct']}/1730 = {summary['accuracy']} "
        f"(official parser: 55.0); via the 'Answer:' line: {sum(i['method'] == 'answer_line' for i in items)}, "
        f"random fallbacks: {sum(i['method'] == 'random' for i in items)}."
    ]


def main() -> None:
    report = ["### MathVista testmini", "", *mathvista(), "", "### Other benchmarks", ""]
    report += [f"- {line}" for line in (*emma(), *mmmu(), *mmmu_pro())]
    sys.stdout.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
