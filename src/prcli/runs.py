"""Outputs and their side files: where they go, and the settings that shape their results."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from prcli.config import plain_values


def sibling(output_file: str | Path, suffix: str) -> Path:
    """A side file of an output file: `out.jsonl` + `.config.yaml` -> `out.config.yaml`.

    (Folder outputs - `pr eval`, `pr train` - keep their side files inside the folder.)
    """
    out = Path(output_file)
    return out.with_name((out.stem if out.suffix == ".jsonl" else out.name) + suffix)


def settings_hash(config: BaseModel, keys: Iterable[str], **extra: object) -> str:
    """A hash of the settings that shape each result: part of every output record's input hash."""
    from prcli.jsonl import content_hash

    values = plain_values(config.model_dump(mode="python"))
    return content_hash({k: values.get(k) for k in keys}, extra)
