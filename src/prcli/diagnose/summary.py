"""The failure breakdown of a labels file: the paper's "72-78% of failures are perception errors"."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prcli.diagnose.records import ERROR_TYPES


def default_fields(items: Path) -> list[str]:
    """The category fields `pr eval` broke its own summary down by, else the generic ones."""
    summary = items.parent / "summary.json"
    if summary.is_file():
        try:
            breakdown = json.loads(summary.read_text(encoding="utf-8")).get("breakdown")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            breakdown = None
        if isinstance(breakdown, dict) and breakdown:
            return list(breakdown)
    from prcli.eval.local import CATEGORY_FIELDS

    return list(CATEGORY_FIELDS)


def _cell(types: Counter[str]) -> dict[str, Any]:
    """Counts by type; the share of failures with a known type that are perception errors."""
    known = types["perception"] + types["reasoning"]
    return {
        "n": sum(types[t] for t in ERROR_TYPES),
        "failures": known + types["unknown_failures"],
        **{t: types[t] for t in ERROR_TYPES},
        "unknown_failures": types["unknown_failures"],
        "perception_share": round(types["perception"] / known, 4) if known else None,
    }


def summarise(labels: Iterable[dict[str, Any]], fields: list[str]) -> dict[str, Any]:
    overall: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    by: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for lab in labels:
        kinds = [lab["error_type"]]
        if lab["error_type"] == "unknown":
            reasons[str(lab.get("reason"))] += 1
            if not lab["correct"]:
                kinds.append("unknown_failures")
        overall.update(kinds)
        for f in fields:
            value = lab.get(f)
            for v in value if isinstance(value, list) else [value]:
                if v is not None and v != "":
                    by[f][str(v)].update(kinds)
    return {
        "overall": _cell(overall),
        "unknown_reasons": dict(reasons.most_common()),
        "by": {
            f: {v: _cell(c) for v, c in sorted(cells.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))}
            for f, cells in by.items()
        },
    }


def read_labels(path: Path) -> Iterable[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)
