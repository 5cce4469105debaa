"""Benchmark evaluation with official scoring: the registry of benchmark modules."""

from __future__ import annotations

from prcli.errors import StageError
from prcli.eval.base import PROMPT_STYLES, Benchmark, Sample
from prcli.eval.emma import EMMA
from prcli.eval.local import Local
from prcli.eval.mathverse import MathVerse
from prcli.eval.mathvision import MathVision
from prcli.eval.mathvista import MathVista
from prcli.eval.mmmu import MMMU
from prcli.eval.mmmu_pro import MMMUPro
from prcli.eval.mmstar import MMStar
from prcli.eval.wemath import WeMath

BENCHMARKS: dict[str, type[Benchmark]] = {
    cls.name: cls for cls in (MathVista, MathVerse, MathVision, WeMath, MMMU, MMMUPro, MMStar, EMMA, Local)
}


def get_benchmark(name: str) -> Benchmark:
    key = name.lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise StageError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]()


__all__ = ["BENCHMARKS", "PROMPT_STYLES", "Benchmark", "Sample", "get_benchmark"]
