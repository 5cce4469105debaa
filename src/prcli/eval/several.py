"""Several benchmarks in one `pr eval` call: their configs, and one model loaded for all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prcli.errors import StageError
from prcli.eval import BENCHMARKS, get_benchmark
from prcli.eval.config import EvalConfig
from prcli.eval.run import EvalSummary, benchmark_samples, images_in_prompt, load_generator, run_eval

# `-b all`: the paper's order (Table 1); a benchmark registered later follows, `local` never
PAPER_ORDER = ("mathvista", "mathverse", "mathvision", "wemath", "mmmu", "mmmu_pro", "mmstar", "emma")


def benchmark_names(spec: str) -> list[str]:
    """`-b`'s benchmarks, registry names in order: one name, a comma-separated list or `all`. An
    unknown name stops here, before anything loads."""
    if spec.strip().lower() == "all":
        return [n for n in PAPER_ORDER if n in BENCHMARKS] + sorted(
            set(BENCHMARKS) - set(PAPER_ORDER) - {"local"}
        )
    names = [get_benchmark(n.strip()).name for n in spec.split(",") if n.strip()]
    if not names:
        raise StageError("--bench is empty: give a benchmark, a comma-separated list or all")
    return list(dict.fromkeys(names))


def per_benchmark(cfg: EvalConfig) -> list[EvalConfig]:
    """One config per benchmark of `-b`. A single benchmark keeps OUT, --data and --predictions as
    given; with several, each writes OUT/<bench>/ and finds its data and predictions under its name
    in the --data and --predictions folders. Every path is resolved before anything loads."""
    names = benchmark_names(cfg.bench)
    if len(names) == 1:
        return [cfg.model_copy(update={"bench": names[0]})]
    return [
        cfg.model_copy(
            update={
                "bench": name,
                "out": cfg.out / name,
                "data": cfg.data and _entry(cfg.data, name, "--data"),
                "predictions": cfg.predictions and _entry(cfg.predictions, name, "--predictions"),
                "run_name": cfg.run_name and f"{cfg.run_name}-{name}",  # a tracker run per benchmark
            }
        )
        for name in names
    ]


def _entry(folder: Path, name: str, option: str) -> Path:
    """FOLDER/<name> or FOLDER/<name>.<ext>: the one entry of a per-benchmark folder for `name`."""
    if not folder.is_dir():
        raise StageError(
            f"{option} {folder}: with several benchmarks, {option} is a folder holding each benchmark's "
            f"file or folder under its name ({folder}/{name}.jsonl, ...); or run one benchmark per call"
        )
    found = sorted(p for p in folder.iterdir() if p.name.partition(".")[0] == name)
    if len(found) != 1:
        what = f"{len(found)} entries ({', '.join(p.name for p in found)})" if found else "no entry"
        raise StageError(f"{option} {folder}: {what} for {name}; expected one {name} or {name}.<ext>")
    return found[0]


@dataclass
class MultiEval:
    """Several benchmarks in one call: each one's result, and how often the model was loaded."""

    results: dict[str, EvalSummary]
    model_loads: int

    @property
    def failed(self) -> list[str]:
        """The benchmarks with failed items (retried by the next run)."""
        return [name for name, r in self.results.items() if r.failed]


class _SharedGenerator:
    """The model under evaluation, loaded once and handed to each benchmark's run, sized for the most
    images any of them puts in one prompt (vLLM fixes that limit when it loads). A benchmark with
    other decoding (EMMA under --decoding-preset official) loads it again: the backends fix their
    decoding when they load."""

    def __init__(self, max_images: int):
        self.max_images, self.loads = max_images, 0
        self._generator: Any = None
        self._decoding: dict[str, Any] | None = None

    def __call__(self, cfg: EvalConfig, max_images: int) -> Any:
        if self._generator is None or cfg.decoding != self._decoding:
            self._generator = None  # the previous model goes before the next one loads
            self._generator = load_generator(cfg, max(max_images, self.max_images))
            self._decoding = cfg.decoding
            self.loads += 1
        return self._generator


def run_evals(
    configs: list[EvalConfig],
    under: Callable[[str, Callable[..., EvalSummary]], EvalSummary] = lambda _label, run: run(None, None),
) -> MultiEval:
    """`run_eval` for each config (from `per_benchmark`), one model for all of them.

    Every benchmark's rows are read first (no image decoding), so missing or bad data stops the call
    before the model loads; items that fail (generation, LLM calls) in one benchmark do not stop the
    others. `under(label, run)` runs each `run(on_start, on_item)`, e.g. under a progress bar.
    """
    max_images = max(
        (
            images_in_prompt(s)
            for c in configs
            for s in benchmark_samples(c, get_benchmark(c.bench), decode_images=False)
        ),
        default=1,
    )
    shared = _SharedGenerator(max_images)
    results = {
        c.bench: under(
            c.bench,
            lambda on_start, on_item, c=c: run_eval(
                c, on_start=on_start, on_item=on_item, make_generator=shared
            ),
        )
        for c in configs
    }
    return MultiEval(results, shared.loads)
