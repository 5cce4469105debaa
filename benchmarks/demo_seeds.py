"""`pr demo` over several seeds: the numbers README's demo section and RESULTS.md report.

Each seed runs the full default demo in its own process (`pr demo --seed S --json`, OMP_NUM_THREADS=1),
`--parallel` at a time; the table gives, per seed, held-out accuracy of SFT, RLVR and Perception-R1,
their perception-error rates (over the responses `pr diagnose` could check; every one could, so far),
the "lucky" counts (right answer, misread shape), the wrong answers from facts stated right, McNemar p of each GRPO arm against SFT (accuracy) and of Perception-R1
against RLVR (perception), and the wall time. A seed that fails is reported, not dropped.

    python benchmarks/demo_seeds.py --seeds 0 1 2 --parallel 2 --out /tmp/demo-seeds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PR = str(Path(sys.executable).parent / "pr")


def run(seed: int, out: Path, extra: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [PR, "demo", "--seed", str(seed), "--out", str(out / f"seed{seed}"), "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.monotonic() - started
    if done.returncode:
        return {"seed": seed, "error": done.stderr[-2000:], "seconds": seconds}
    return {"seed": seed, **json.loads(done.stdout), "wall": seconds}


def p_of(report: dict, a: str, b: str, outcome: str) -> str:
    for t in report["tests"]:
        if (t["a"], t["b"], t["outcome"]) == (a, b, outcome):
            return f"{t['p_value']:.3g} ({t['only_a']}/{t['only_b']})"
    return "n/a"


def table(reports: list[dict]) -> str:
    head = (
        "| seed | acc SFT | acc RLVR | acc PR1 | perc. err. SFT | perc. err. RLVR | perc. err. PR1 "
        "| lucky SFT/RLVR/PR1 | wrong from facts stated right SFT/RLVR/PR1 | p SFT vs RLVR (acc) "
        "| p SFT vs PR1 (acc) | p RLVR vs PR1 (perc.) | seconds |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in reports:
        if "error" in r:
            lines.append(f"| {r['seed']} | failed: {r['error'].splitlines()[-1] if r['error'] else '?'} |")
            continue
        m = {x["model"]: x for x in r["models"]}

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.1f}"

        lines.append(
            f"| {r['seed']} | "
            + " | ".join(pct(m[k]["accuracy"]) for k in ("sft", "rlvr", "perception-r1"))
            + " | "
            + " | ".join(pct(m[k]["perception_error_rate"]) for k in ("sft", "rlvr", "perception-r1"))
            + " | "
            + "/".join(str(r["numbers"][f"breakdown_{k}"]["lucky"]) for k in ("sft", "rlvr", "perception-r1"))
            + " | "
            + "/".join(str(m[k]["wrong_reasoning"]) for k in ("sft", "rlvr", "perception-r1"))
            + f" | {p_of(r, 'sft', 'rlvr', 'accuracy')} | {p_of(r, 'sft', 'perception-r1', 'accuracy')}"
            + f" | {p_of(r, 'rlvr', 'perception-r1', 'perception')} | {r['wall']:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("demo-seeds"))
    ap.add_argument(
        "demo_args", nargs="*", help="Passed to every `pr demo` (after --), e.g. -- --teacher-slip 0."
    )
    args = ap.parse_args()
    with ThreadPoolExecutor(args.parallel) as pool:
        reports = list(pool.map(lambda s: run(s, args.out, args.demo_args), args.seeds))
    (args.out / "reports.json").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "reports.json").write_text(json.dumps(reports, indent=1) + "\n")
    print(table(reports))
    for r in reports:
        checked = {m["model"]: m["checked"] for m in r.get("models", [])}
        print(f"seed {r['seed']}: {r.get('verdict', 'failed')}; checked {checked}")


if __name__ == "__main__":
    main()
