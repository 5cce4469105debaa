"""`pr diagnose --judge vlm`: a vision model lists the response's visual claims and checks each on the image.

No reference facts are needed, so any benchmark can be diagnosed. `pr eval`'s items.jsonl does not
carry images, so an item's images are its own `images` field (paths relative to the items file) or
those of the `--annotations` record with the same id (`pr annotate`'s output or any problems file with
`id` and `images`; its annotations are not used). The answer format is strict: one
`<claim verdict="consistent|contradicted">...</claim>` per claim, or `<none/>` when the response makes no
visual claim. An answer in any other shape fails the item (retried on the next run, never cached); an
explicit `<none/>` is a real finding, so the item is `unknown` with that reason, as is an item whose
image is missing or cannot be read (no call is made for it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, StrictStr

from prcli.cache import ResultCache, cache_key
from prcli.diagnose.records import DiagnoseItem, label
from prcli.images import file_digest, image_message
from prcli.jsonl import check_jsonl
from prcli.judge.statements import Verdict
from prcli.llm import Constraint, Endpoint, LLMClient
from prcli.records import Id, ImagePath, Record

PROMPT_VERSION = "pr-diagnose-vlm-v1"
DEFAULT_VLM_JUDGE_MODEL = "Qwen/Qwen2.5-VL-72B-Instruct"
NONE = "<none/>"
NO_CLAIMS = "the vision judge found no visual claim in the response"

SYSTEM = (
    "You see the figure of a math problem and a solution written by a model. List every visual claim "
    "the solution makes about the figure: a length, angle, label, count, position, shape, relation "
    "(parallel, perpendicular, tangent, ...) or value read off a chart or table. Leave out computations "
    "and conclusions derived from other claims. Check each claim against the image:\n"
    "- consistent: the image shows it;\n"
    "- contradicted: the image shows otherwise (the solution misreads the figure).\n"
    "Answer with one line per claim and nothing else, for example:\n"
    '<claim verdict="consistent">AB = 6</claim>\n'
    '<claim verdict="contradicted">angle B is 50 degrees</claim>\n'
    f"If the solution makes no visual claim, answer exactly {NONE}"
)

_CLAIM = re.compile(r'<claim verdict="([^"]*)">(.*?)</claim>', re.DOTALL)
_SHAPE = Constraint(
    "diagnose-vlm", regex=f'(<claim verdict="(consistent|contradicted)">[^<]+</claim>\\n?)+|{NONE}'
)


def parse_claims(text: str) -> list[tuple[str, Verdict]]:
    """[(claim, verdict)] of a strict answer ([] for `<none/>`); ValueError for anything else."""
    stripped = text.strip()
    if stripped == NONE:
        return []
    tags = _CLAIM.findall(stripped)
    if not tags:
        raise ValueError(f"no <claim> tag and not {NONE}")
    if _CLAIM.sub("", stripped).strip():
        raise ValueError("text outside the tags")
    claims: list[tuple[str, Verdict]] = []
    for verdict, claim in tags:
        v = verdict.strip().lower()
        if v not in ("consistent", "contradicted"):
            raise ValueError(f"not a verdict: {verdict[:40]!r}")
        c = " ".join(claim.split())
        if not c:
            raise ValueError("an empty claim")
        claims.append((c, v))  # type: ignore[arg-type]
    return claims


class _ImageSource(Record):
    """A record lending an item its images (and question); annotations, if any, are not needed."""

    id: Id
    images: list[ImagePath] = Field(default_factory=list)
    question: StrictStr | None = None


def load_images(path: Path) -> dict[str, dict[str, Any]]:
    """{id: {images (resolved against the file's folder), question}}; unreadable images are per item."""
    checked = check_jsonl(path, _ImageSource, context={"check_images": False})
    return {
        r.id: {"images": r.images, **({"question": r.question} if r.question is not None else {})}
        for r in checked
    }


def image_join(
    by_id: dict[str, dict[str, Any]] | None, key: str
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A line converter giving an item without `images` those of the record whose id is `obj[key]`;
    an item with no such record is left as it is (labelled unknown, not a file error)."""

    def join(obj: dict[str, Any]) -> dict[str, Any]:
        own = obj.get("images")
        if own is not None:
            if not (isinstance(own, list) and all(isinstance(p, str) for p in own)):
                raise ValueError("images: expected a list of image paths")
            return obj
        if by_id is None:
            return obj
        ref = obj.get(key)
        if ref is None:
            raise ValueError(f"{key}: required to join images, but missing")
        found = by_id.get(str(ref))
        return {**found, **obj} if found is not None else obj

    return join


def unreadable(path: Path) -> str | None:
    """Why an image cannot be sent (missing, or not decodable), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


class VLMClaims:
    """Asks a vision model on `endpoint` for one response's claims and verdicts; cached by content
    (the images by their bytes)."""

    def __init__(
        self,
        endpoint: Endpoint,
        max_tokens: int,
        cache: ResultCache | None,
        *,
        items_dir: Path,
        source: Path | None,
        key: str,
    ):
        self.client = LLMClient(endpoint, default_model=DEFAULT_VLM_JUDGE_MODEL, max_tokens=max_tokens)
        self.cache = cache
        self.max_tokens = max_tokens
        self.items_dir, self.source, self.key = items_dir, source, key

    def _cache_key(self, images: list[Path], question: str | None, response: str) -> str:
        return cache_key(
            role="diagnose-vlm",
            model=self.client.model,
            prompt_version=PROMPT_VERSION,
            images=[file_digest(str(p)) for p in images],
            question=question,
            response=response,
            decoding={"temperature": 0.0, "max_tokens": self.max_tokens},
        )

    async def claims(
        self, images: list[Path], question: str | None, response: str
    ) -> tuple[list[tuple[str, Verdict]] | None, str | None]:
        """(claims, None), or (None, the error) when the call failed or its answer did not parse."""
        key = self._cache_key(images, question, response) if self.cache is not None else None
        if key is not None and self.cache is not None:
            hit: Any = self.cache.get(key)
            if hit is not None:
                return [(c, v) for c, v in hit], None
        text = (f"Problem:\n{question}\n\n" if question else "") + f"Solution:\n{response}\n"
        messages = [{"role": "system", "content": SYSTEM}, *image_message(text, [str(p) for p in images])]
        result = await self.client.chat(messages, constraint=_SHAPE)
        if not result.ok:
            return None, result.error
        try:
            claims = parse_claims(result.text or "")
        except ValueError as exc:
            return None, f"unparsable: {exc}"
        if key is not None and self.cache is not None:
            self.cache.put(key, [list(c) for c in claims])
        return claims, None

    async def label(
        self, item: DiagnoseItem, categories: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, str | None]:
        """(the item's label, None), or (None, the error) when the judge failed; the label's `facts`
        are the judge's claims."""
        extra = item.model_extra or {}
        if not (item.response or "").strip():
            return label(item, [], None, "no response", categories), None
        if not extra.get("images"):
            ref = str(extra.get(self.key, item.id))
            where = f" in {self.source}" if self.source else " (give --annotations records with images)"
            return label(item, [], None, f"no image for {self.key} {ref!r}{where}", categories), None
        images = [self.items_dir / p for p in extra["images"]]  # joined paths are already absolute
        for path in images:
            why = unreadable(path)
            if why is not None:
                return label(item, [], None, f"image cannot be read: {path} ({why})", categories), None
        question = extra.get("question") if isinstance(extra.get("question"), str) else None
        claims, error = await self.claims(images, question, item.response or "")
        if claims is None:
            return None, error
        if not claims:
            return label(item, [], None, NO_CLAIMS, categories), None
        return label(item, [c for c, _ in claims], [v for _, v in claims], None, categories), None

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
