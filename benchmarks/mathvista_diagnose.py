"""`pr diagnose` on real MathVista outputs: the paper's perception-error analysis, offline.

The MathVista authors' outputs of three models (`../shared/data/mathvista/outputs`) carry the official
per-item verdicts (`true_false`). The geometry items' reference facts are taken from the question text
where it states a figure fact (a length, an angle, an arc, a parallel or perpendicular pair): there are
no human annotations of the images, so this is what can be checked offline. Each model's responses are
then labelled by `pr diagnose`'s lexical backend (library API, `prcli.diagnose.run`).

Why a small extractor here and not `pr annotate`'s rules extractor: the rules extractor reads a CoT
sentence by sentence; question text packs several givens and the question into one sentence ("As
shown in the figure, if CB = 4.0, DB = 7.0, and D is the midpoint of AC, then AC is ()"), and about
half the geometry questions are in Chinese, so the extractor keeps "Shown in the figure." or nothing.
Here every stated quantity becomes one fact in the lexical backend's own form (`AB = 4`,
`angle AEC = 105`), so each fact is one the lexical backend can find contradicted.

    python benchmarks/mathvista_diagnose.py [--data ../shared/data/mathvista] [--out mathvista-diagnose]

Writes, per model, items.jsonl, labels.jsonl and labels.summary.json under --out, the annotations file,
and prints a Markdown table of the breakdown.
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from pathlib import Path

from prcli.diagnose.run import DiagnoseConfig, run_diagnose
from prcli.judge.lexical import normalise
from prcli.judge.statements import _SENTENCE, _relations, stated_values

MODELS = ("gpt4_2shot_solution", "bard", "llava_llama_2_13b")
GEOMETRY = "geometry problem solving"
_CJK = re.compile(r"([\u3000-\u303f\u4e00-\u9fff\uff00-\uffef])")
_RATIO = re.compile(r"\d+(?:\.\d+)?\s*:\s*\d+(?:\.\d+)?")
_CLAUSE = re.compile(r"[,;]|\bif\b|\bthen\b|\band\b|(?<=[.!?])\s")


def question_facts(question: str) -> list[str]:
    """The figure facts a question states, one quantity or relation each, in the lexical backend's form."""
    text = unicodedata.normalize("NFKC", question)  # fullwidth ＝ ， ． of Chinese questions
    text = _CJK.sub(r" \1 ", text.replace("。", ". ").replace("、", ", "))  # 且AB=5: AB starts a word
    text = normalise(_RATIO.sub("a ratio", text))  # "2 : 5" is a ratio, not AC = 2
    facts: list[str] = []
    for clause in _CLAUSE.split(text):
        for subject, values in stated_values(clause).items():
            if len(values) == 1:  # a clause giving two values for one quantity states neither
                kind, name = subject.split(" ", 1)
                facts.append(
                    f"{name} = {next(iter(values))}" if kind == "segment" else f"{subject} = {values.pop()}"
                )
    for sentence in _SENTENCE.split(text):
        for lines, relations in _relations(sentence):
            if len(lines) == 2 and len(relations) == 1:
                a, b = sorted(lines)
                facts.append(f"{a} is {next(iter(relations))} to {b}")
    facts = list(dict.fromkeys(facts))
    subjects = [f.rsplit(" = ", 1)[0] for f in facts]
    return [f for f, s in zip(facts, subjects, strict=True) if subjects.count(s) == 1]  # two values: neither


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data" / "mathvista")
    ap.add_argument("--out", type=Path, default=Path("mathvista-diagnose"))
    args = ap.parse_args()
    records = json.loads((args.data / "testmini.json").read_text(encoding="utf-8"))
    geometry = {pid: r for pid, r in records.items() if r["metadata"]["task"] == GEOMETRY}
    args.out.mkdir(parents=True, exist_ok=True)
    annotated = []
    for pid, r in geometry.items():
        facts = question_facts(r["question"])
        if facts:
            annotated.append(
                {"id": pid, "question": r["question"], "answer": r["answer"], "annotations": facts}
            )
    annotations = args.out / "annotations.jsonl"
    annotations.write_text(
        "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in annotated), encoding="utf-8"
    )
    n_facts = sum(len(a["annotations"]) for a in annotated)
    print(f"{len(geometry)} geometry items; {len(annotated)} with facts in the question ({n_facts} facts)")

    rows = []
    for model in MODELS:
        outputs = json.loads((args.data / "outputs" / model / "output.json").read_text(encoding="utf-8"))
        items = args.out / model / "items.jsonl"
        items.parent.mkdir(parents=True, exist_ok=True)
        with open(items, "w", encoding="utf-8") as fh:
            for pid in geometry:
                o = outputs[pid]
                correct = o["true_false"] in (True, "True", "true")
                meta = records[pid]["metadata"]
                line = {"id": pid, "response": o.get("response") or "", "correct": correct}
                fh.write(json.dumps({**line, "source": meta["source"], "language": meta["language"]}) + "\n")
        result = run_diagnose(
            DiagnoseConfig(
                items=items,
                annotations=annotations,
                out=args.out / model / "labels.jsonl",
                judge="lexical",
                field=["language"],
                overwrite=True,
            )
        )
        cell = result.summary["overall"]
        checked = cell["n"] - cell["unknown"]
        share = cell["perception_share"]
        rows.append(
            f"| {model} | {cell['n']} | {checked} ({checked / cell['n']:.0%}) | {cell['failures']} | "
            f"{cell['perception']} | {cell['reasoning']} | {cell['unknown_failures']} | {cell['none']} | "
            f"{cell['lucky']} | " + (f"{share:.0%}" if share is not None else "n/a") + " |"
        )
    print(
        "| model | geometry items | checked | failures | perception | reasoning | unknown failures "
        "| right | lucky | perception share of checked failures |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
