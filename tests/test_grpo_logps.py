"""The log-probs GRPO trains on are the policy's own: each batched row equals a clean forward of that
prompt with its own image, also for the shorter (padded) prompts of a batch.

Before `load_processor` set left padding, TRL built `mm_token_type_ids` right-padded beside left-padded
prompt ids (TRL issue 5785): a padded row's image markers sat beside its image tokens. Its completion
log-probs were off by up to 6 nats on the demo's SFT model, by about 1e-4 on this test's random model
(which barely uses positions), so the test also checks the markers themselves.
The trainer is TRL's own; the test only watches one step (it wraps the batch builder and reads its result).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prcli.tasks import write_tasks

pytestmark = pytest.mark.slow


def test_batched_log_probs_equal_each_rows_own(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import torch
    import trl.trainer.grpo_trainer as grpo
    from trl.data_utils import apply_chat_template

    from prcli.train import TrainConfig, train

    # questions of several lengths ("left"/"right", "same colour"): most rows of a batch are padded
    data = write_tasks(tmp_path / "data", 8, seed=0, kinds=["side_colour", "same_colour"], prefix="train-")
    seen: dict[str, Any] = {}
    original = grpo.GRPOTrainer._generate_and_score_completions

    def watched(self: Any, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = original(self, inputs)
        if seen:
            return out
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
        mask = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
        k = out["completion_ids"].size(1)
        mm = {key: out[key] for key in ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids")}
        with torch.no_grad():
            batched, _, _ = self._get_per_token_logps_and_entropies(
                self.model, ids, mask, k, len(inputs), **mm
            )
        gaps, padded = [], 0
        for i, row in enumerate(inputs):
            padded += int((out["prompt_mask"][i] == 0).any())
            text = apply_chat_template({"prompt": row["prompt"]}, self.processing_class)["prompt"]
            enc = self.processing_class(text=[text], images=[row["images"]], return_tensors="pt")
            done = out["completion_mask"][i].bool()
            completion = out["completion_ids"][i][done]
            full = torch.cat([enc["input_ids"][0], completion])[None]
            types = torch.cat([enc["mm_token_type_ids"][0], torch.zeros_like(completion)])[None]
            with torch.no_grad():
                logits = self.model(
                    input_ids=full,
                    pixel_values=enc["pixel_values"],
                    image_grid_thw=enc["image_grid_thw"],
                    mm_token_type_ids=types,
                ).logits
            own = torch.log_softmax(logits[0, -len(completion) - 1 : -1].float(), -1)
            own = own.gather(-1, completion[:, None])[:, 0]
            gaps.append((batched[i][done] - own).abs().max().item())
        # the image markers sit exactly on the image tokens of the (left-padded) prompt ids
        image_pad = self.processing_class.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        width = out["prompt_ids"].size(1)
        marks = out["mm_token_type_ids"][:, :width] == 1
        seen.update(
            gaps=gaps, padded=padded, aligned=bool(torch.equal(marks, out["prompt_ids"] == image_pad))
        )
        return out

    monkeypatch.setattr(grpo.GRPOTrainer, "_generate_and_score_completions", watched)
    train(
        TrainConfig(
            model=str(tiny_model_dir),
            data=data,
            output_dir=tmp_path / "run",
            prompts_per_step=4,
            num_generations=2,
            per_device_batch_size=8,
            max_completion_length=8,
            max_steps=1,
            learning_rate=1e-9,
            min_pixels=3136,
            max_pixels=3136,
            device="cpu",
            seed=0,
        )
    )
    assert seen["padded"] > 0, "no padded row: the test would not see the misalignment"
    assert seen["aligned"]
    assert max(seen["gaps"]) < 2e-5, seen["gaps"]  # float32 noise; misaligned rows differ by 1e-4 and more
