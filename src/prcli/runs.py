"""Outputs and their side files: where they go, and the settings that shape their results."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from prcli.config import plain_values
from prcli.jsonl import content_hash, sibling

__all__ = ["settings_hash", "sibling"]


def settings_hash(config: BaseModel, keys: Iterable[str], **extra: object) -> str:
    """A hash of the settings that shape each result: part of every output record's input hash."""
    values = plain_values(config.model_dump(mode="python"))
    return content_hash({k: values.get(k) for k in keys}, extra)
