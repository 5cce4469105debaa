"""`--protocol official` against MathVista's official verdicts, through a replay server.

    python benchmarks/mathvista_parity.py            # prints a markdown table

For each set of real model outputs in tests/data/mathvista/outputs (from the MathVista authors:
the full `response`, the GPT `extraction`, the official `true_false`), the full responses are
scored by `pr eval --protocol official` with a local OpenAI-compatible server standing in for GPT:
it finds the item (its query and response) in each extraction request and answers with the
recorded official extraction. Agreement with `true_false` then measures our prompt plumbing and
the official normaliser together; `--protocol rules` on the same responses is reported beside it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prcli.eval.protocols import PROMPTS
from prcli.eval.run import EvalConfig, run_eval
from prcli.testing import FaultServer, replay

OUTPUTS = Path(__file__).resolve().parent.parent / "tests" / "data" / "mathvista" / "outputs"
MODELS = ("bard", "gpt4_2shot_solution", "llava_llama_2_13b")


def recordings(outputs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each item's extraction request slot (its query and response) -> its official extraction."""
    slot = PROMPTS["mathvista_extract"].slot
    return {
        slot.format(query=o["query"], response=(o["response"] or "").strip()): str(o["extraction"] or "")
        for o in outputs.values()
    }


def agreement(
    model: str, protocol: str, folder: Path, pids: list[str] | None = None, concurrency: int = 32
) -> tuple[int, int, int, float]:
    """(items whose verdict equals the official one, items scored, items decided by LLM extraction,
    seconds) for one model's outputs; `pids`: only these items."""
    path = OUTPUTS / model / "output.json"
    outputs = json.loads(path.read_text(encoding="utf-8"))
    if pids is not None:
        outputs = {pid: outputs[pid] for pid in pids}
    preds = folder / f"{model}.jsonl"
    preds.write_text(
        "".join(json.dumps({"id": k, "response": o["response"] or ""}) + "\n" for k, o in outputs.items())
    )
    with FaultServer(reply=replay(recordings(outputs))) as server:
        cfg = EvalConfig(
            bench="mathvista",
            data=path,
            predictions=preds,
            out=folder / f"{model}-{protocol}",
            protocol=protocol,  # type: ignore[arg-type]
            answer_judge_base_url=[server.base_url],
            answer_judge_model="replay",
            answer_judge_concurrency=concurrency,
            cache=False,
        )
        started = time.monotonic()
        run = run_eval(cfg)
        seconds = time.monotonic() - started
    if run.failed:
        raise RuntimeError(f"{run.failed} item(s) failed: {run.first_error}")
    items = [json.loads(x) for x in (cfg.out / "items.jsonl").read_text().splitlines()]
    same = sum(
        i["correct"] == (outputs[i["id"]]["true_false"] in (True, "True"))
        for i in items
        if i["id"] in outputs
    )
    extracted = sum(i["method"] == "llm_extraction" for i in items)
    return same, len(outputs), extracted, seconds


def main() -> None:
    lines = [
        "| model | items | official protocol: same verdict | of them LLM-extracted | rules: same verdict | official run, s |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            same_o, n, extracted, seconds = agreement(model, "official", Path(tmp))
            same_r, _, _, _ = agreement(model, "rules", Path(tmp))
            lines.append(
                f"| {model} | {n} | {same_o}/{n} ({100 * same_o / n:.1f}%) | {extracted} | "
                f"{same_r}/{n} ({100 * same_r / n:.1f}%) | {seconds:.1f} |"
            )
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
