"""`pr diagnose --agreement`: how far people agree with the automatic perception-error labels.

The labels are only as useful as their agreement with a human reading the figure, so a labelling sheet's
export (`pr diagnose --sample`) is joined by id with the labels and scored with Cohen's kappa.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import StrictBool, StrictStr

from prcli.jsonl import check_jsonl
from prcli.records import Id, Record

# perception_error true / false / null (the person could not tell; the judge could not check)
CATEGORIES = ("yes", "no", "unknown")


class HumanVerdict(Record):
    """One line of a labelling sheet's export."""

    id: Id
    perception_error: StrictBool | None
    notes: StrictStr | None = None


def category(perception_error: bool | None) -> str:
    return "unknown" if perception_error is None else ("yes" if perception_error else "no")


def kappa_and_table(pairs: Iterable[tuple[bool | None, bool | None]]) -> dict[str, Any]:
    """Cohen's kappa over the items both sides decided (yes/no), and the full 3x3 confusion table.

    `pairs` are (human, automatic) perception_error values. An undecided item on either side says
    nothing about agreement on the decision, so it is counted in the table but kept out of kappa.
    """
    table = {h: dict.fromkeys(CATEGORIES, 0) for h in CATEGORIES}
    for human, auto in pairs:
        table[category(human)][category(auto)] += 1
    decided = [[table[h][a] for a in ("yes", "no")] for h in ("yes", "no")]
    n_decided = sum(map(sum, decided))
    kappa: float | None = None
    if n_decided:
        import numpy as np
        from statsmodels.stats.inter_rater import cohens_kappa

        with np.errstate(invalid="ignore", divide="ignore"):
            value = float(cohens_kappa(decided, return_results=False))
        kappa = round(value, 4) if value == value else None  # nan: one category only, kappa undefined
    n = sum(sum(row.values()) for row in table.values())
    agree = decided[0][0] + decided[1][1]
    return {
        "n": n,
        "n_decided": n_decided,
        "observed_agreement": round(agree / n_decided, 4) if n_decided else None,
        "kappa": kappa,
        "confusion": table,  # rows: human, columns: automatic
    }


def load_human(path: Path) -> dict[str, bool | None]:
    """{id: perception_error} of a sheet's export; a bad line stops it with FILE:LINE (before labelling)."""
    return {v.id: v.perception_error for v in check_jsonl(path, HumanVerdict)}


def agreement(
    human_path: Path, human: dict[str, bool | None], labels: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    """Join the human verdicts with the labels by id and score them."""
    human = dict(human)
    pairs = []
    for lab in labels:
        if lab["id"] in human:
            pairs.append((human.pop(lab["id"]), lab["perception_error"]))
    return {"human": str(human_path), **kappa_and_table(pairs), "not_in_labels": len(human)}
