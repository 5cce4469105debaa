"""File names derived from data (record ids, ...), made safe to create inside a folder of ours."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_filename(value: str, suffix: str = "", *, max_stem: int = 64) -> str:
    """A file name for `value` that stays in its folder: `<readable stem>-<hash of value><suffix>`.

    Data may hold `../../x`, `a/b`, NUL, reserved or over-long names; the stem keeps only ASCII
    letters, digits, `_` and `-` (so no separator, no `..`, no hidden file), cut to `max_stem`
    characters. The hash of the exact original keeps values that clean to the same stem apart
    (`a/b` and `a_b`, `A` and `a` on a case-insensitive disk). `suffix` comes from our code, not data.
    """
    stem = _UNSAFE.sub("_", value).strip("_")[:max_stem]
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return f"{stem}-{digest}{suffix}" if stem else f"{digest}{suffix}"
