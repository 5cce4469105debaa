"""Outputs and their side files: where they go, and the settings that shape their results."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prcli.config import plain_values
from prcli.jsonl import content_hash, sibling

__all__ = ["StageResult", "settings_hash", "sibling"]


class StageResult:
    """Base of the dataclass a stage returns: `as_dict` is its `--json` form (paths as text)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def settings_hash(config: BaseModel, keys: Iterable[str], **extra: object) -> str:
    """A hash of the settings that shape each result: part of every output record's input hash.

    A key may name a field of a nested model: `endpoint.model`."""
    values = plain_values(config.model_dump(mode="python"))

    def get(key: str) -> object:
        value: object = values
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return content_hash({k: get(k) for k in keys}, extra)
