"""In-process chat generation with transformers: text LLMs and VLMs, batched, greedy by default.

Used by every `hf` backend (judge, extractor, CoT teacher, eval). Vision-language checkpoints are
loaded with `AutoModelForImageTextToText` and their processor, text-only ones with
`AutoModelForCausalLM` and their tokenizer.
"""

from __future__ import annotations

import threading
from typing import Any

from prcli.models import resolve_model

Message = dict[str, Any]


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def is_vision_config(config: Any) -> bool:
    return getattr(config, "vision_config", None) is not None


class ChatGenerator:
    """Generate assistant replies for batches of conversations (images in content parts)."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ):
        import torch
        from transformers import AutoConfig

        self.name = resolve_model(model)
        self.device = pick_device(device)
        config = AutoConfig.from_pretrained(self.name)
        self.is_vlm = is_vision_config(config)
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        if self.is_vlm:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            kwargs: dict[str, Any] = {}
            if min_pixels or max_pixels:
                size = {}
                if min_pixels:
                    size["shortest_edge"] = min_pixels
                if max_pixels:
                    size["longest_edge"] = max_pixels
                kwargs["size"] = size
            self.processor = AutoProcessor.from_pretrained(self.name, **kwargs)
            self.tokenizer = self.processor.tokenizer
            self.model = AutoModelForImageTextToText.from_pretrained(self.name, dtype=torch_dtype)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(self.name)
            self.model = AutoModelForCausalLM.from_pretrained(self.name, dtype=torch_dtype)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.to(self.device).eval()
        self._lock = threading.Lock()

    def chat(
        self,
        conversations: list[list[Message]],
        *,
        images: list[list[Any]] | None = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[str]:
        """One reply per conversation. `images[i]` are the PIL images of conversation i, in the
        order of its `{"type": "image"}` parts."""
        import torch

        template_owner = self.processor if self.processor is not None else self.tokenizer
        texts = [
            template_owner.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
            for conv in conversations
        ]
        flat_images = [im for ims in (images or []) for im in ims]
        if self.processor is not None:
            inputs = self.processor(text=texts, images=flat_images or None, return_tensors="pt", padding=True)
        else:
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(self.device)
        gen: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if temperature > 0:
            gen.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(**inputs, **gen)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
