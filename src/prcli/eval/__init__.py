"""Benchmark evaluation with official scoring: the registry of benchmark modules.

Every module of this package is imported here, and each benchmark class registers itself where it
is defined (`@Benchmark.register`): adding a benchmark is adding one module. The modules named in
`_NOT_BENCHMARKS` are the shared machinery.
"""

from __future__ import annotations

import importlib
import pkgutil

from prcli.errors import StageError
from prcli.eval.base import BENCHMARKS, PROMPT_STYLES, Benchmark, Sample

_NOT_BENCHMARKS = {
    "base",
    "config",
    "extract",
    "formats",
    "generate",
    "predictions",
    "protocols",
    "run",
    "several",
}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_BENCHMARKS:
        importlib.import_module(f"{__name__}.{_module.name}")


def get_benchmark(name: str) -> Benchmark:
    key = name.lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise StageError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[key]()


__all__ = ["BENCHMARKS", "PROMPT_STYLES", "Benchmark", "Sample", "get_benchmark"]
