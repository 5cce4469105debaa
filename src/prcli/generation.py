"""In-process chat generation with transformers: text LLMs and VLMs, batched, greedy by default.

Used by every `hf` backend (judge, extractor, CoT teacher, eval). Vision-language checkpoints are
loaded with `AutoModelForImageTextToText` and their processor, text-only ones with
`AutoModelForCausalLM` and their tokenizer.
"""

from __future__ import annotations

import threading
from typing import Any

from prcli.concurrency import MicroBatcher
from prcli.models import model_errors, resolve_model

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
        with model_errors(model):  # one clean line for a missing or broken model (train shares it)
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

    def chat(self, conversations: list[list[Message]], **kwargs: Any) -> list[str]:
        """One reply per conversation (the arguments of `chat_with_reasons`)."""
        return [text for text, _ in self.chat_with_reasons(conversations, **kwargs)]

    def chat_with_reasons(
        self,
        conversations: list[list[Message]],
        *,
        images: list[list[Any]] | None = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[tuple[str, str]]:
        """(reply, finish reason) per conversation: "length" when the reply was cut at
        `max_new_tokens`, "stop" when the model ended it, as an OpenAI server reports them.
        `images[i]` are the PIL images of conversation i, in the order of its image parts."""
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
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        ends = {t for t in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if t is not None}
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        ends |= set(
            configured if isinstance(configured, list) else [configured] if configured is not None else []
        )
        reasons = []
        for row in new_tokens.tolist():
            stopped = any(t in ends for t in row) or len(row) < max_new_tokens
            reasons.append("stop" if stopped else "length")
        return list(zip(texts, reasons, strict=True))


# ----------------------------------------------------------------------------- async, batched, OpenAI-shaped


def image_from_url(url: str) -> Any:
    """A PIL image from a `data:` URL (what the OpenAI-shaped messages carry) or a local path."""
    import base64
    import io

    from PIL import Image

    if url.startswith("data:"):
        payload = url.split(",", 1)[1]
        return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")
    return Image.open(url.removeprefix("file://")).convert("RGB")


def split_images(messages: list[Message]) -> tuple[list[Message], list[Any]]:
    """OpenAI-style messages -> (messages with `{"type": "image"}` placeholders, their PIL images)."""
    images: list[Any] = []
    out: list[Message] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image_url":
                    images.append(image_from_url(part["image_url"]["url"]))
                    parts.append({"type": "image"})
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out, images


class LocalChat:
    """A transformers model behind the same `chat()` as `LLMClient`: async, never raising, and
    batched: concurrent calls are gathered into `generate()` batches of up to `batch_size`."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        batch_size: int = 8,
        max_tokens: int = 512,
        temperature: float = 0.0,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ):
        from prcli.llm import LLMStats

        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.pixels = (min_pixels, max_pixels)
        self.stats = LLMStats()
        self._generator: ChatGenerator | None = None
        self._batcher = MicroBatcher(
            self._generate, batch_size, group=lambda r: (r["max_tokens"], r["temperature"], r["seed"])
        )

    def _generate(self, batch: list[dict[str, Any]]) -> list[tuple[str, str]]:
        if self._generator is None:
            self._generator = ChatGenerator(
                self.model, device=self.device, min_pixels=self.pixels[0], max_pixels=self.pixels[1]
            )
        first = batch[0]
        return self._generator.chat_with_reasons(
            [r["messages"] for r in batch],
            images=[r["images"] for r in batch] if any(r["images"] for r in batch) else None,
            max_new_tokens=first["max_tokens"],
            temperature=first["temperature"],
            seed=first["seed"],
        )

    async def chat(
        self,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        require_complete: bool = True,
        **_server_only: Any,
    ) -> Any:
        from prcli.llm import ChatResult, truncated_error

        self.stats.requests += 1
        try:
            plain, images = split_images(messages)
        except Exception as exc:
            self.stats.failed += 1
            return ChatResult(None, error=f"bad image: {type(exc).__name__}: {exc}")
        request = {
            "messages": plain,
            "images": images,
            "max_tokens": max_tokens or self.max_tokens,
            "temperature": self.temperature if temperature is None else temperature,
            "seed": seed,
        }
        try:
            text, reason = await self._batcher.submit(request)
        except Exception as exc:
            self.stats.failed += 1
            return ChatResult(None, error=f"generation failed: {type(exc).__name__}: {exc}", attempts=1)
        if require_complete and reason == "length":
            self.stats.failed += 1
            self.stats.count_error("truncated")
            return ChatResult(
                None, error=truncated_error(request["max_tokens"]), attempts=1, finish_reason=reason
            )
        self.stats.succeeded += 1
        return ChatResult(text, attempts=1, finish_reason=reason)
