"""Outputs and their side files: where they go, and refusing to resume with other settings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from prcli.config import load_config_file, plain_values
from prcli.jsonl import InputError, LineProblem


def sibling(output_file: str | Path, suffix: str) -> Path:
    """A side file of an output file: `out.jsonl` + `.config.yaml` -> `out.config.yaml`.

    (Folder outputs - `pr eval`, `pr train` - keep their side files inside the folder.)
    """
    out = Path(output_file)
    return out.with_name((out.stem if out.suffix == ".jsonl" else out.name) + suffix)


def _has_results(output: Path) -> bool:
    if output.is_dir():
        return any(p.name != "config.yaml" for p in output.iterdir())
    return output.exists() and output.stat().st_size > 0


def check_same_settings(
    saved: Path, output: Path, config: BaseModel, keys: Iterable[str], *, overwrite: bool
) -> None:
    """Refuse to resume `output` (a file or a folder) made with settings that change results, as
    recorded in `saved`.

    Resuming skips finished ids; mixing, say, two judge models in one file would be silent garbage.
    """
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
