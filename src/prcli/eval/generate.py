"""Generation backends for `pr eval`: transformers in process (batched), any OpenAI-compatible
server (concurrent; images as data URLs), or vLLM in process (GPU). Each turns samples' prompt
parts into responses; a response that could not be produced is an `Exception` in its slot."""

from __future__ import annotations

import base64
import io
from typing import Any

from prcli.concurrency import run_sync
from prcli.eval.base import Benchmark, Sample, open_image


def _images(sample: Sample, parts: list[dict[str, Any]]) -> list[Any]:
    return [open_image(sample.images[p["index"]], sample.base_dir) for p in parts if p["type"] == "image"]


def _png_data_url(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class HFGenerator:
    def __init__(
        self,
        model: str,
        *,
        device: str,
        batch_size: int,
        decoding: dict[str, Any],
        pixels: tuple[int | None, int | None],
    ):
        from prcli.generation import ChatGenerator

        self.chat = ChatGenerator(model, device=device, min_pixels=pixels[0], max_pixels=pixels[1])
        self.batch_size = batch_size
        self.decoding = decoding

    def generate(self, bench: Benchmark, samples: list[Sample], style: str) -> list[str | Exception]:
        conversations, images = [], []
        for sample in samples:
            parts = bench.prompt_parts(sample, style)
            content = [{"type": "image"} if p["type"] == "image" else p for p in parts]
            conversations.append([{"role": "user", "content": content}])
            images.append(_images(sample, parts))
        return list(
            self.chat.chat(
                conversations,
                images=images if any(images) else None,
                max_new_tokens=self.decoding["max_new_tokens"],
                temperature=self.decoding["temperature"],
                top_p=self.decoding["top_p"],
                seed=self.decoding["seed"],
            )
        )


class OpenAIGenerator:
    def __init__(self, client: Any, decoding: dict[str, Any]):
        self.client = client
        self.decoding = decoding

    def generate(self, bench: Benchmark, samples: list[Sample], style: str) -> list[str | Exception]:
        async def one(sample: Sample) -> str | Exception:
            parts = bench.prompt_parts(sample, style)
            images = iter(_images(sample, parts))
            content = [
                {"type": "image_url", "image_url": {"url": _png_data_url(next(images))}}
                if p["type"] == "image"
                else p
                for p in parts
            ]
            result = await self.client.chat(
                [{"role": "user", "content": content}],
                max_tokens=self.decoding["max_new_tokens"],
                temperature=self.decoding["temperature"],
                seed=self.decoding["seed"],
                require_complete=False,  # a response cut at the limit is the model's answer, scored as is
            )
            return result.text if result.ok else RuntimeError(result.error)

        async def all_of() -> list[str | Exception]:
            import asyncio

            return list(await asyncio.gather(*(one(s) for s in samples)))

        return run_sync(all_of())


class VLLMGenerator:
    """vLLM in process (the `vllm` extra, GPU). Prompts go through `LLM.chat` with PIL images."""

    def __init__(
        self,
        model: str,
        *,
        decoding: dict[str, Any],
        tensor_parallel_size: int,
        gpu_memory_utilization: float,
        max_model_len: int | None,
        max_images: int,
    ):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise RuntimeError("--backend vllm needs vLLM: pip install 'prcli[vllm]' (GPU only)") from exc
        self.llm = LLM(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            limit_mm_per_prompt={"image": max_images},
            seed=decoding["seed"],
        )
        greedy = decoding["temperature"] == 0
        self.params = SamplingParams(
            temperature=decoding["temperature"],
            top_p=1.0 if greedy else decoding["top_p"],
            top_k=1 if greedy else -1,
            max_tokens=decoding["max_new_tokens"],
            seed=decoding["seed"],
        )

    def generate(self, bench: Benchmark, samples: list[Sample], style: str) -> list[str | Exception]:
        conversations = []
        for sample in samples:
            parts = bench.prompt_parts(sample, style)
            images = iter(_images(sample, parts))
            content = [
                {"type": "image_pil", "image_pil": next(images)} if p["type"] == "image" else p for p in parts
            ]
            conversations.append([{"role": "user", "content": content}])
        return chat_each_on_failure(self.llm, conversations, self.params)


def chat_each_on_failure(llm: Any, conversations: list[Any], params: Any) -> list[str | Exception]:
    """The batch through `llm.chat`; if vLLM rejects it (one prompt too long, one image it cannot
    process), each prompt again on its own, so that only the bad ones fail (to failed.jsonl) and the
    rest of the batch is kept."""
    try:
        return [o.outputs[0].text for o in llm.chat(conversations, params, use_tqdm=False)]
    except Exception:  # vLLM raises plain ValueError/RuntimeError for a bad prompt
        results: list[str | Exception] = []
        for conversation in conversations:
            try:
                (output,) = llm.chat([conversation], params, use_tqdm=False)
                results.append(output.outputs[0].text)
            except Exception as exc:
                results.append(exc)
        return results
