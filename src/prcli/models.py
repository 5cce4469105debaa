"""Model names: short aliases resolved in one place; hub ids and local paths pass through."""

from __future__ import annotations

from pathlib import Path

ALIASES: dict[str, str] = {
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen2.5-vl-32b": "Qwen/Qwen2.5-VL-32B-Instruct",
    "qwen2.5-vl-72b": "Qwen/Qwen2.5-VL-72B-Instruct",
    "qwen2-vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2-vl-7b": "Qwen/Qwen2-VL-7B-Instruct",
    "qwen2-vl-72b": "Qwen/Qwen2-VL-72B-Instruct",
    "qwen3-vl-2b": "Qwen/Qwen3-VL-2B-Instruct",
    "qwen3-vl-4b": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3-vl-8b": "Qwen/Qwen3-VL-8B-Instruct",
    "qwen3-vl-32b": "Qwen/Qwen3-VL-32B-Instruct",
    # text LLMs for the judge, annotation extractor and answer judge roles
    "qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct",
    "qwen2.5-32b": "Qwen/Qwen2.5-32B-Instruct",
    "qwen2.5-32b-awq": "Qwen/Qwen2.5-32B-Instruct-AWQ",
    "qwen2.5-72b": "Qwen/Qwen2.5-72B-Instruct",
    "perception-r1-7b": "tongxiao2002/Perception-R1-7B",
}


def resolve_model(name: str) -> str:
    """Alias -> hub id (case-insensitive); an existing local path or any other id is returned as is."""
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return ALIASES.get(name.lower(), name)
