"""Images for chat messages: files become `data:` URLs (what OpenAI-compatible servers accept)."""

from __future__ import annotations

import base64
import hashlib
import mimetypes
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=256)
def data_url(path: str) -> str:
    """`data:image/png;base64,...` for an image file (MIME type from its content)."""
    raw = Path(path).read_bytes()
    return f"data:{_mime(raw, path)};base64,{base64.b64encode(raw).decode('ascii')}"


def _mime(raw: bytes, path: str) -> str:
    signatures = {
        b"\x89PNG": "image/png",
        b"\xff\xd8\xff": "image/jpeg",
        b"GIF8": "image/gif",
        b"RIFF": "image/webp",
        b"BM": "image/bmp",
    }
    for magic, mime in signatures.items():
        if raw.startswith(magic):
            return mime
    return mimetypes.guess_type(path)[0] or "image/png"


@lru_cache(maxsize=4096)
def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes: images enter cache keys by content, not by path."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def image_message(text: str, images: list[str]) -> list[dict[str, Any]]:
    """One user turn: the images (as data URLs) first, then the text."""
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": data_url(p)}} for p in images]
    parts.append({"type": "text", "text": text})
    return [{"role": "user", "content": parts}]
