"""Outputs and their side files: where they go, and refusing to resume with other settings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from prcli.config import load_config_file, plain_values
from prcli.jsonl import InputError, LineProblem


def sibling(output: str | Path, suffix: str) -> Path:
    """`out.jsonl` + `.config.yaml` -> `out.config.yaml`; for a folder output, `folder/config.yaml`."""
    out = Path(output)
    if out.suffix == ".jsonl":
        return out.with_name(out.stem + suffix)
    if out.suffix:
        return out.with_name(out.name + suffix)
    return out / suffix.lstrip(".")


def _has_results(output: Path) -> bool:
    if output.is_dir():
        return any(p.name != "config.yaml" for p in output.iterdir())
    return output.exists() and output.stat().st_size > 0


def check_same_settings(output: Path, config: BaseModel, keys: Iterable[str], *, overwrite: bool) -> None:
    """Refuse to resume an output that was made with settings that change results.

    Resuming skips finished ids; mixing, say, two judge models in one file would be silent garbage.
    """
    saved = sibling(output, ".config.yaml")
    if overwrite or not saved.exists() or not _has_results(output):
        return
    before = load_config_file(saved)
    now = plain_values(config.model_dump(mode="python"))
    changed = [
        f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys if k in before and before[k] != now.get(k)
    ]
    if changed:
        problem = (
            f"{output} was made with other settings ({'; '.join(changed)}); "
            "pass --overwrite to start again, or choose another output"
        )
        raise InputError([LineProblem(saved, 0, problem)])
