"""McNemar's test for two models' paired per-item outcomes (method.md section 5).

The paper's p-values (0.22, 0.69, 0.04 for discordant counts 1/5, 2/4, 2/10) are the exact
two-sided binomial test on the discordant pairs, the default here. Also: mid-p, chi-square with and
without continuity correction (warned about when b + c is small), the accuracy difference with an
Agresti-Min interval (Wald after adding 1/2 to each cell; better coverage than plain Wald at small
n), the conditional odds ratio b/c with an exact Clopper-Pearson interval, an optional paired
bootstrap, and per-category tests with Holm or Benjamini-Hochberg correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Method = Literal["exact", "midp", "chi2", "chi2-cc"]
METHODS: tuple[str, ...] = ("exact", "midp", "chi2", "chi2-cc")
SMALL_DISCORDANT = 25


@dataclass
class McNemarResult:
    n: int
    both_correct: int
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    both_wrong: int
    acc_a: float
    acc_b: float
    difference: float  # acc_b - acc_a
    ci: tuple[float, float]
    p_value: float
    method: str
    p_values: dict[str, float]
    odds_ratio: float | None  # c / b: how much more often B alone is right than A alone
    odds_ratio_ci: tuple[float, float] | None
    warnings: list[str] = field(default_factory=list)
    bootstrap_ci: tuple[float, float] | None = None
    alpha: float = 0.05

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def proportion_ci(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of k successes in n (keeps inside [0, 1] and covers well at small n)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
    return float(low), float(high)


def p_values(b: int, c: int) -> dict[str, float]:
    """Two-sided p-values of every method for discordant counts b and c."""
    from scipy.stats import binom
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    table = [[0, b], [c, 0]]
    if b + c == 0:
        return dict.fromkeys(METHODS, 1.0)
    k = min(b, c)
    midp = 2 * (binom.cdf(k, b + c, 0.5) - 0.5 * binom.pmf(k, b + c, 0.5))
    return {
        "exact": float(sm_mcnemar(table, exact=True).pvalue),
        "midp": float(min(1.0, midp)),
        "chi2": float(sm_mcnemar(table, exact=False, correction=False).pvalue),
        "chi2-cc": float(sm_mcnemar(table, exact=False, correction=True).pvalue),
    }


def agresti_min_ci(both: int, b: int, c: int, neither: int, alpha: float) -> tuple[float, float]:
    """Interval for the paired difference acc_B - acc_A: Wald after adding 1/2 to every cell."""
    from scipy.stats import norm

    n = both + b + c + neither + 2.0
    b_, c_ = b + 0.5, c + 0.5
    diff = (c_ - b_) / n
    se = math.sqrt(max(0.0, (b_ + c_) - (c_ - b_) ** 2 / n)) / n
    z = norm.ppf(1 - alpha / 2)
    return max(-1.0, diff - z * se), min(1.0, diff + z * se)


def odds_ratio_ci(b: int, c: int, alpha: float) -> tuple[float | None, tuple[float, float] | None]:
    """c/b with an exact interval from the Clopper-Pearson interval of c/(b+c)."""
    if b + c == 0:
        return None, None
    from scipy.stats import binomtest

    ci = binomtest(c, b + c, 0.5).proportion_ci(confidence_level=1 - alpha, method="exact")
    low = ci.low / (1 - ci.low) if ci.low < 1 else math.inf
    high = ci.high / (1 - ci.high) if ci.high < 1 else math.inf
    return (c / b if b else math.inf), (low, high)


def bootstrap_ci(
    a: Sequence[bool], b: Sequence[bool], iterations: int, seed: int, alpha: float
) -> tuple[float, float]:
    """Percentile interval of acc_B - acc_A over items resampled with replacement (paired)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    idx = rng.integers(0, len(diff), size=(iterations, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def mcnemar(
    a: Sequence[bool],
    b: Sequence[bool],
    *,
    method: Method = "exact",
    alpha: float = 0.05,
    bootstrap: int = 0,
    seed: int = 0,
) -> McNemarResult:
    """Paired comparison of outcomes `a` (model A) and `b` (model B) on the same items, in order."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} outcomes for A but {len(b)} for B")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    n = len(a)
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    neither = n - both - only_a - only_b
    pv = p_values(only_a, only_b)
    warnings = []
    if method in ("chi2", "chi2-cc") and only_a + only_b < SMALL_DISCORDANT:
        warnings.append(
            f"only {only_a + only_b} discordant pairs: the chi-square approximation is unreliable below "
            f"{SMALL_DISCORDANT}; the exact test is the safer choice"
        )
    ratio, ratio_ci = odds_ratio_ci(only_a, only_b, alpha)
    return McNemarResult(
        n=n,
        both_correct=both,
        b=only_a,
        c=only_b,
        both_wrong=neither,
        acc_a=100.0 * (both + only_a) / n if n else 0.0,
        acc_b=100.0 * (both + only_b) / n if n else 0.0,
        difference=100.0 * (only_b - only_a) / n if n else 0.0,
        ci=tuple(100.0 * x for x in agresti_min_ci(both, only_a, only_b, neither, alpha)),  # type: ignore[arg-type]
        p_value=pv[method],
        method=method,
        p_values=pv,
        odds_ratio=ratio,
        odds_ratio_ci=ratio_ci,
        warnings=warnings,
        bootstrap_ci=tuple(100.0 * x for x in bootstrap_ci(a, b, bootstrap, seed, alpha))
        if bootstrap and n
        else None,  # type: ignore[arg-type]
        alpha=alpha,
    )


def adjust(p: list[float], correction: Literal["holm", "bh", "none"]) -> list[float]:
    """Multiple-testing adjusted p-values across categories."""
    if correction == "none" or not p:
        return list(p)
    from statsmodels.stats.multitest import multipletests

    return [float(x) for x in multipletests(p, method="holm" if correction == "holm" else "fdr_bh")[1]]
