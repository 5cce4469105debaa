"""Training rows from annotated records: the chat prompt, its images, and the columns rewards read."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any

from pydantic import ValidationInfo, field_validator

from prcli.errors import StageError
from prcli.models import model_errors, resolve_model
from prcli.prompts import render_template, user_content
from prcli.records import AnnotatedProblem, Problem
from prcli.sources import Source, read_source
from prcli.train.config import TrainConfig

log = logging.getLogger("prcli.train")

# Qwen-VL's `smart_resize` (the trainer's processor and vLLM's) raises on a longer side over 200
# times the shorter one.
MAX_ASPECT = 200


@dataclass(frozen=True)
class ImageBounds:
    """The image areas a run trains on, and the side multiple of the policy's vision encoder.

    Qwen-VL processors resize every image with `smart_resize`: sides rounded to multiples of `factor`
    (patch size x merge size, 28) and the area brought into the processor's own bounds. Colocated vLLM
    and `trl vllm-serve` build that processor from the model folder with the model's bounds, not ours,
    so an image is fitted once, in the dataset, to a size every such processor leaves as it is.
    """

    low: int
    high: int
    factor: int

    @classmethod
    def of(cls, image_processor: Any) -> ImageBounds:
        """The bounds a Qwen-VL image processor resizes to."""
        size = image_processor.size
        factor = image_processor.patch_size * image_processor.merge_size
        return cls(size["shortest_edge"], size["longest_edge"], factor)

    def __post_init__(self) -> None:
        """Bounds no image fits would leave `fitted_size` nothing to return: refused here."""
        if not self._long_sides(1):
            raise StageError(
                f"no image of whole {self.factor}x{self.factor} cells has between {self.low} and {self.high} "
                "pixels: widen --min-pixels/--max-pixels"
            )

    def _long_sides(self, short: int) -> range:
        """The long sides, in cells, that keep the area within bounds with a short side of `short` cells."""
        cells = short * self.factor**2
        return range(math.ceil(self.low / cells), self.high // cells + 1)

    def fitted_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) with both sides multiples of `factor` and the area within [low, high].

        Scaled by the square root of the area ratio when the area is outside the bounds (as EasyR1's
        `process_image`), aspect kept; then the sides are rounded to whole cells: the short side down or
        up, whichever (with the nearest long side that keeps the area in bounds) keeps the aspect best.
        Such a size is a fixed point of `smart_resize` for any bounds that contain [low, high].
        """
        area = width * height
        scale = math.sqrt(min(max(area, self.low), self.high) / area)
        short, long = (side * scale / self.factor for side in sorted((width, height)))  # in cells
        a = max(1, math.floor(short))
        while not self._long_sides(a):  # narrow bounds: a shorter short side leaves the long side room
            a -= 1
        pairs = [(s, self._nearest_long(s, long)) for s in (a, a + 1) if self._long_sides(s)]
        a, b = min(pairs, key=lambda p: abs(math.log(p[1] / p[0] * short / long)))
        fitted = (a * self.factor, b * self.factor)
        return fitted if width <= height else (fitted[1], fitted[0])

    def _nearest_long(self, short: int, long: float) -> int:
        sides = self._long_sides(short)
        return min(max(round(long), sides[0]), sides[-1])


class TrainProblem(AnnotatedProblem):
    """An annotated problem whose images the policy's processor can take once fitted.

    Checked as the line is read (validation context `image_bounds`), so an image Qwen-VL refuses is
    a bad line like any other: FILE:LINE in the error, or rejected with --skip-invalid, instead of a
    traceback from the processor halfway through the data.
    """

    @field_validator("images")
    @classmethod
    def _fittable(cls, images: list[str], info: ValidationInfo) -> list[str]:
        return fittable_images(images, info)


def fittable_images(images: list[str], info: ValidationInfo) -> list[str]:
    """`images`, refused if one would be too long and thin for Qwen-VL once fitted (context `image_bounds`)."""
    bounds = (info.context or {}).get("image_bounds")
    if bounds is None:
        return images
    from PIL import Image

    for path in images:
        with Image.open(path) as image:  # the header only; EXIF rotation keeps the aspect
            width, height = image.size
        fitted = bounds.fitted_size(width, height)
        if max(fitted) > MAX_ASPECT * min(fitted):
            raise ValueError(
                f"image {path} ({width}x{height} pixels) is too long and thin: fitted to whole "
                f"{bounds.factor}-pixel cells it would be {fitted[0]}x{fitted[1]}, an aspect ratio of "
                f"{max(fitted) / min(fitted):.0f}:1, and Qwen-VL takes at most {MAX_ASPECT}:1; crop or pad it"
            )
    return images


def fit_image(path: str | Path, bounds: ImageBounds) -> Any:
    """The image at `path` resized to `bounds.fitted_size` (the file is left as it is), in RGB with
    transparency on white, as the processors convert it.

    Turned upright by its EXIF orientation first, as `transformers`' `load_image` and `datasets`
    do: the stored PNG has no EXIF, so a phone photo would otherwise train sideways.
    """
    from PIL import Image, ImageOps
    from transformers.image_transforms import convert_to_rgb

    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image)
        rgb = Image.fromarray(convert_to_rgb(upright, return_numpy=True))
    size = bounds.fitted_size(*rgb.size)
    return rgb if rgb.size == size else rgb.resize(size, Image.Resampling.BICUBIC)


def png(image: Any) -> dict[str, Any]:
    """An image as a `datasets.Image` value: PNG bytes (lossless; fast compression, as the bytes
    live only in this run's memory)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return {"bytes": buffer.getvalue(), "path": None}


def load_processor(cfg: TrainConfig) -> Any:
    """The policy's processor, bounded by `--min-pixels`/`--max-pixels` kept within the model's own.

    vLLM's processor has the model's bounds: ours must lie inside them for the fitted images to reach
    vLLM unchanged, so where the model's are narrower they win, with a warning.
    """
    from transformers import AutoImageProcessor, AutoProcessor

    path = resolve_model(cfg.model)
    with model_errors(cfg.model):
        own = ImageBounds.of(AutoImageProcessor.from_pretrained(path))
    bounds = ImageBounds(max(cfg.min_pixels, own.low), min(cfg.max_pixels, own.high), own.factor)
    if (bounds.low, bounds.high) != (cfg.min_pixels, cfg.max_pixels):
        log.warning(
            "images are fitted to %d..%d pixels: --min-pixels %d/--max-pixels %d reach outside %s's own "
            "bounds %d..%d, which vLLM uses",
            *(bounds.low, bounds.high, cfg.min_pixels, cfg.max_pixels, cfg.model, own.low, own.high),
        )
    size = {"shortest_edge": bounds.low, "longest_edge": bounds.high}
    with model_errors(cfg.model):
        processor = AutoProcessor.from_pretrained(path, size=size)
    # TRL's GRPO pads prompt_ids on the left but takes the multimodal fields (mm_token_type_ids) from a
    # second processor call padded on the tokenizer's own side (TRL issue 5785). Qwen-VL tokenizers pad
    # on the right, so in every shorter prompt of a batch the image markers sat off the image tokens:
    # wrong M-RoPE positions, wrong log-probs, wrong gradients (tests/test_grpo_logps.py). Left on
    # both paths, they agree.
    processor.tokenizer.padding_side = "left"
    return processor


def build_rows(records: list[Problem], template: str) -> list[dict[str, Any]]:
    """One training row per problem: a conversational prompt with image parts where `<image>` was."""
    rows = []
    for rec in records:
        text = render_template(template, rec.question)
        rows.append(
            {
                "id": rec.id,
                "prompt": [{"role": "user", "content": user_content(text, len(rec.images))}],
                "images": list(rec.images),
                "answer": rec.answer,
                "annotations": list(getattr(rec, "annotations", None) or []),  # none for `pr sft`'s
            }
        )
    return rows


def prompt_length(row: dict[str, Any], processor: Any) -> int:
    """Prompt tokens, image tokens included, as the policy will see them (`row["images"]`: PIL images)."""
    text = processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=row["images"] or None, return_tensors="np")
    return int(batch["input_ids"].shape[1])


def fitted_rows(
    source: Source,
    record_type: type[Any],
    template: str,
    processor: Any,
    skip_invalid: bool,
    rejected: Path | None,
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(record, training row) for each valid record of `source`, the row's images fitted to the
    processor's bounds here, once, as PIL images: the length filter, the trainer and vLLM then all
    see the same pixels. A generator, so one row's images are decoded at a time."""
    bounds = ImageBounds.of(processor.image_processor)
    records = list(
        read_source(
            source,
            record_type,
            skip_invalid=skip_invalid,
            rejected_path=rejected,
            context={"image_bounds": bounds},
        )
    )
    for record, row in zip(records, build_rows(records, template), strict=True):
        yield record, {**row, "images": [fit_image(p, bounds) for p in row["images"]]}


def stored(row: dict[str, Any]) -> dict[str, Any]:
    """A row kept for training, its fitted images as PNG bytes (small in memory; decoded when used)."""
    return {**row, "images": [png(image) for image in row["images"]]}


def image_dataset(rows: list[dict[str, Any]]) -> Any:
    """A `datasets.Dataset` of `stored` rows, the images typed as images."""
    from datasets import Dataset, Image, Sequence

    return Dataset.from_list(rows).cast_column("images", Sequence(Image()))


def load_dataset_rows(
    data: Path | str,
    cfg: TrainConfig,
    processor: Any,
    rejected: Path | None = None,
    split: str | EllipsisType | None = ...,
) -> tuple[Any, int]:
    """A `datasets.Dataset` of training rows from `data` (read under `cfg`'s --field/--subset/--split;
    `split` instead of --split) and how many prompts were dropped for length."""
    source = Source.of(data, cfg, split=split)
    kept, total = [], 0
    for _, row in fitted_rows(
        source, TrainProblem, cfg.prompt_template, processor, cfg.skip_invalid, rejected
    ):
        total += 1
        if prompt_length(row, processor) <= cfg.max_prompt_length:
            kept.append(stored(row))
    if not kept:
        raise StageError(
            f"every prompt in {source.label} is longer than max_prompt_length={cfg.max_prompt_length}"
        )
    return image_dataset(kept), total - len(kept)


def check_enough_prompts(usable: int, dropped: int, cfg: TrainConfig) -> None:
    """Refuse a training set too small for one optimizer step, before the model is loaded.

    TRL's sampler keeps only whole rollout batches of `prompts_per_step` prompts (the rest of each
    epoch is dropped), so fewer usable prompts than that give 0 steps per epoch: TRL then logs a
    warning, trains nothing, whatever `--epochs` or `--max-steps` say, and the untrained model would
    be saved as the result. With at least one whole batch, `--max-steps` is always reachable (TRL
    cycles the data), so this is the only size that cannot train.
    """
    if usable >= cfg.prompts_per_step:
        return
    why = (
        f" ({dropped} more dropped as longer than max_prompt_length={cfg.max_prompt_length})"
        if dropped
        else ""
    )
    raise StageError(
        f"{cfg.data} has {usable} usable record(s){why}, but one optimizer step needs "
        f"--prompts-per-step {cfg.prompts_per_step} prompts: nothing would be trained; "
        f"lower --prompts-per-step to at most {usable} or add records"
    )
