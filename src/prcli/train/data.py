"""Training rows from annotated records: the chat prompt, its images, and the columns rewards read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prcli.errors import StageError
from prcli.jsonl import check_jsonl
from prcli.models import model_errors, resolve_model
from prcli.prompts import render_template, user_content
from prcli.records import AnnotatedProblem
from prcli.train.config import TrainConfig


def load_processor(cfg: TrainConfig) -> Any:
    from transformers import AutoProcessor

    size = {"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels}
    with model_errors(cfg.model):
        return AutoProcessor.from_pretrained(resolve_model(cfg.model), size=size)


def build_rows(records: list[AnnotatedProblem], template: str) -> list[dict[str, Any]]:
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
                "annotations": list(rec.annotations),
            }
        )
    return rows


def prompt_length(row: dict[str, Any], processor: Any) -> int:
    """Prompt tokens, image tokens included, as the policy will see them."""
    from PIL import Image

    text = processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    images = [Image.open(p).convert("RGB") for p in row["images"]]
    batch = processor(text=[text], images=images or None, return_tensors="np")
    return int(batch["input_ids"].shape[1])


def load_dataset_rows(
    path: Path, cfg: TrainConfig, processor: Any, rejected: Path | None = None
) -> tuple[Any, int]:
    """A `datasets.Dataset` of training rows and how many prompts were dropped for length."""
    from datasets import Dataset, Image, Sequence

    records = list(check_jsonl(path, AnnotatedProblem, skip_invalid=cfg.skip_invalid, rejected_path=rejected))
    rows = build_rows(records, cfg.prompt_template)
    kept = [r for r in rows if prompt_length(r, processor) <= cfg.max_prompt_length]
    dropped = len(rows) - len(kept)
    if not kept:
        raise StageError(f"every prompt in {path} is longer than max_prompt_length={cfg.max_prompt_length}")
    dataset = Dataset.from_list(kept)
    return dataset.cast_column("images", Sequence(Image())), dropped


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
