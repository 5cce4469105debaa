"""Model names: short aliases resolved in one place; hub ids and local paths pass through."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prcli.errors import StageError

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


@contextmanager
def model_errors(name: str) -> Iterator[None]:
    """Turn a failed `from_pretrained` of `name` into one clean line (a StageError).

    transformers raises OSError/ValueError with many-line messages and a deep traceback for a
    missing folder, an unknown hub id, no network or a folder without a model; train and eval both
    load through here so the user sees the same single line.
    """
    try:
        yield
    except (OSError, ValueError) as exc:
        raise StageError(describe_load_error(name, exc)) from None


def describe_load_error(name: str, exc: BaseException) -> str:
    resolved = resolve_model(name)
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if Path(resolved).expanduser().exists():
        return f"cannot load model {name!r} from {resolved}: {first}"
    if _looks_like_path(name):
        return f"model folder not found: {name}"
    return (
        f"cannot load model {name!r}: not a local folder, and not found on the Hugging Face hub or in its cache "
        f"({first})"
    )


def check_model(name: str) -> str:
    """The resolved name of a model whose config loads; a clear StageError otherwise (cheap: no weights)."""
    from transformers import AutoConfig

    resolved = resolve_model(name)
    with model_errors(name):
        AutoConfig.from_pretrained(resolved)
    return resolved


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1
