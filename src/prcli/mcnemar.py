"""`pr mcnemar`: pair two files of per-item outcomes by id and test the difference (see `prcli.stats`)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from prcli.config import StageConfig
from prcli.jsonl import InputError, LineProblem, iter_raw_lines, parse_line, require_jsonl_file
from prcli.stats import McNemarResult, Method, adjust, mcnemar
from prcli.trackers import TrackerOptions, tracked


class McNemarConfig(StageConfig, TrackerOptions):
    a: Path = Field(description="Per-item outcomes of model A (JSONL, e.g. items.jsonl from `pr eval`).")
    b: Path = Field(description="Per-item outcomes of model B, paired with A by --key.")
    key: str = Field("id", description="Field that pairs the items of A and B.")
    field: str = Field(
        "correct", description="Outcome field: a boolean or 0/1 (e.g. correct, a perception label)."
    )
    outcome: Literal["field", "perception"] = Field(
        "field",
        description="field (the boolean --field) or perception: no perception error, from `pr diagnose` "
        "labels (perception_error false); items whose perception_error is null are excluded and counted.",
    )
    method: Method = Field("exact", description="exact (binomial; the paper's), midp, chi2 or chi2-cc.")
    alpha: float = Field(0.05, gt=0, lt=1, description="1 - confidence level of the intervals.")
    by: str | None = Field(
        None, description="Also test within each value of this category field (e.g. task)."
    )
    correction: Literal["holm", "bh", "none"] = Field(
        "holm", description="Multiple-testing correction across --by categories."
    )
    intersect: bool = Field(
        False,
        description="Drop (and report) unpaired ids, duplicates and non-boolean values instead of failing.",
    )
    bootstrap: int = Field(
        0, ge=0, description="Paired bootstrap resamples for a percentile interval (0: off)."
    )
    seed: int = Field(0, description="Seed of the bootstrap.")


@dataclass
class Outcomes:
    path: Path
    values: dict[str, bool]
    categories: dict[str, Any]
    errors: list[LineProblem] = field(default_factory=list)  # always fatal: unreadable lines, missing fields
    droppable: list[LineProblem] = field(
        default_factory=list
    )  # duplicates, non-boolean values: --intersect drops
    sha256: str = ""
    excluded: set[str] = field(default_factory=set)  # ids whose outcome is null (nothing to compare)


PERCEPTION_FIELD = "perception_error"


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    return None


def _missing_everywhere(path: Path, name: str, lines: list[int], seen: dict[str, None]) -> LineProblem:
    """One problem for a field no line has (a typo in --key/--field), listing the fields there are."""
    fields = ", ".join(list(seen)[:30]) + (", ..." if len(seen) > 30 else "")
    where = f"in all {len(lines)} lines" if len(lines) > 1 else "in the file"
    return LineProblem(path, 0, f"no such field {where}; the fields are: {fields}", name)


def read_outcomes(
    path: Path, key: str, field_name: str, by: str | None, *, perception: bool = False
) -> Outcomes:
    """Each id's outcome. `perception`: the outcome is *no* perception error, and a null one is excluded."""
    require_jsonl_file(path)
    excluded: set[str] = set()
    values: dict[str, bool] = {}
    categories: dict[str, Any] = {}
    first_line: dict[str, int] = {}
    duplicates: set[str] = set()
    errors: list[LineProblem] = []
    droppable: list[LineProblem] = []
    missing: dict[str, list[int]] = {key: [], field_name: []}  # lines without the key / the outcome
    seen: dict[str, None] = {}  # every field name, in order of first appearance
    n_objects = 0
    digest = hashlib.sha256()
    for lineno, raw in iter_raw_lines(path):
        if raw is not None:
            digest.update(raw)
        obj = parse_line(path, lineno, raw)
        if obj is None:
            continue
        if isinstance(obj, LineProblem):
            errors.append(obj)
            continue
        n_objects += 1
        seen.update(dict.fromkeys(obj))
        absent = [name for name in missing if name not in obj]
        for name in absent:
            missing[name].append(lineno)
        if absent:
            continue
        item_id = obj[key]
        if not isinstance(item_id, str):  # ids are strings: 0 and "0", null and "None" are not one item
            got = json.dumps(item_id, ensure_ascii=False, default=str)
            errors.append(LineProblem(path, lineno, f"expected a string, got {got}", key))
            continue
        if perception and obj[field_name] is None:
            excluded.add(item_id)
            continue
        outcome = _as_bool(obj[field_name])
        if perception and outcome is not None:
            outcome = not outcome
        if outcome is None:
            droppable.append(
                LineProblem(path, lineno, f"expected a boolean or 0/1, got {obj[field_name]!r}", field_name)
            )
            continue
        if item_id in first_line:
            droppable.append(
                LineProblem(
                    path, lineno, f"duplicate {key} {item_id!r} (first at line {first_line[item_id]})", key
                )
            )
            duplicates.add(item_id)
            continue
        first_line[item_id] = lineno
        values[item_id] = outcome
        if by is not None:
            categories[item_id] = obj.get(by)
    for item_id in duplicates:  # an id seen twice has no single outcome
        values.pop(item_id, None)
    for name, lines in missing.items():
        if lines and len(lines) == n_objects:
            errors.append(_missing_everywhere(path, name, lines, seen))
        else:
            errors.extend(LineProblem(path, line, "required field is missing", name) for line in lines)
    errors.sort(key=lambda p: p.line)
    if not values and not errors and not droppable and not excluded:
        errors.append(LineProblem(path, 0, "empty file: no items"))
    return Outcomes(path, values, categories, errors, droppable, digest.hexdigest(), excluded)


@dataclass
class CategoryResult:
    value: str
    result: McNemarResult
    p_adjusted: float


@dataclass
class McNemarReport:
    overall: McNemarResult
    key: str
    field: str
    only_a: list[str]
    only_b: list[str]
    dropped: list[str]
    by: str | None = None
    categories: list[CategoryResult] = field(default_factory=list)
    correction: str = "holm"
    inputs: dict[str, str] = field(default_factory=dict)
    outcome: str = "field"
    excluded: dict[str, int] = field(default_factory=dict)  # perception: null outcomes, per file and paired

    def as_dict(self) -> dict[str, Any]:
        out = {
            **self.overall.as_dict(),
            "key": self.key,
            "field": self.field,
            "inputs": self.inputs,
            "only_in_a": len(self.only_a),
            "only_in_b": len(self.only_b),
            "dropped": self.dropped,
            "outcome": self.outcome,
        }
        if self.outcome == "perception":
            out["excluded_null"] = self.excluded
        if self.by:
            out["by"] = {
                "field": self.by,
                "correction": self.correction,
                "categories": [
                    {"value": c.value, "p_adjusted": c.p_adjusted, **c.result.as_dict()}
                    for c in self.categories
                ],
            }
        return out


@tracked("mcnemar")
def run_mcnemar(cfg: McNemarConfig) -> McNemarReport:
    perception = cfg.outcome == "perception"
    field_name = PERCEPTION_FIELD if perception else cfg.field
    a = read_outcomes(cfg.a, cfg.key, field_name, cfg.by, perception=perception)
    b = read_outcomes(cfg.b, cfg.key, field_name, cfg.by, perception=perception)
    if a.errors or b.errors:
        raise InputError(a.errors + b.errors)
    excluded = a.excluded | b.excluded  # an item not checkable in either model has no pair
    for outcomes in (a, b):
        for item_id in excluded:
            outcomes.values.pop(item_id, None)
    problems = a.droppable + b.droppable
    only_a = sorted(set(a.values) - set(b.values))
    only_b = sorted(set(b.values) - set(a.values))
    if not cfg.intersect:
        for item_id in only_a[:20]:
            problems.append(LineProblem(cfg.a, 0, f"{item_id!r} is not in {cfg.b}", cfg.key))
        for item_id in only_b[:20]:
            problems.append(LineProblem(cfg.b, 0, f"{item_id!r} is not in {cfg.a}", cfg.key))
        extra = len(only_a) + len(only_b) - min(20, len(only_a)) - min(20, len(only_b))
        if extra > 0:
            problems.append(
                LineProblem(cfg.a, 0, f"... and {extra} more unpaired id(s); --intersect drops them")
            )
        if problems:
            raise InputError(problems, total=len(problems))
    ids = [i for i in a.values if i in b.values]  # A's order
    if not ids:
        raise InputError([*problems, LineProblem(cfg.a, 0, f"no {cfg.key} is in both files")])
    va, vb = [a.values[i] for i in ids], [b.values[i] for i in ids]
    overall = mcnemar(va, vb, method=cfg.method, alpha=cfg.alpha, bootstrap=cfg.bootstrap, seed=cfg.seed)
    report = McNemarReport(
        overall=overall,
        key=cfg.key,
        field="no perception error" if perception else cfg.field,
        only_a=only_a,
        only_b=only_b,
        dropped=[str(p) for p in problems],
        by=cfg.by,
        correction=cfg.correction,
        inputs={"a": str(cfg.a), "a_sha256": a.sha256, "b": str(cfg.b), "b_sha256": b.sha256},
        outcome=cfg.outcome,
        excluded={"a": len(a.excluded), "b": len(b.excluded), "items": len(excluded)},
    )
    if cfg.by:
        groups: dict[str, list[str]] = defaultdict(list)
        for i in ids:
            value = a.categories.get(i, b.categories.get(i))
            for v in value if isinstance(value, list) else [value]:
                if v is not None:
                    groups[str(v)].append(i)
        results = [
            (
                v,
                mcnemar(
                    [a.values[i] for i in g], [b.values[i] for i in g], method=cfg.method, alpha=cfg.alpha
                ),
            )
            for v, g in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        ]
        adjusted = adjust([r.p_value for _, r in results], cfg.correction)
        report.categories = [CategoryResult(v, r, p) for (v, r), p in zip(results, adjusted, strict=True)]
    return report
