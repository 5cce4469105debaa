"""One async client for every LLM role (judge, annotator, CoT teacher, answer judge, eval generation).

It speaks the OpenAI chat API to any compatible server (vLLM, SGLang, `transformers serve`, hosted
APIs) and never raises for a failed request: callers get a `ChatResult` with `error` set and decide
by their failure policy. There is exactly one retry layer (the openai client's own retries are off):
bounded concurrency, a per-request timeout, exponential backoff with jitter on connection errors,
timeouts, 429/5xx and malformed bodies. API keys come from an environment variable and are scrubbed
from every error message.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from prcli.config import EnvVarName, StageConfig

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
CONSTRAINT_FIELDS = ("structured_outputs", "guided_", "response_format", "json_schema")


class LLMConfig(StageConfig):
    """How to reach an OpenAI-compatible server and how hard to try."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="Server URL, ending in /v1.")
    model: str = Field("Qwen/Qwen2.5-32B-Instruct", description="Model name the server knows.")
    api_key_env: EnvVarName = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    concurrency: int = Field(64, ge=1, description="Requests in flight at most.")
    timeout: float = Field(60.0, gt=0, description="Seconds per request attempt.")
    max_retries: int = Field(3, ge=0, description="Retries after the first attempt.")
    backoff: float = Field(1.0, ge=0, description="First retry delay in seconds; doubles each retry.")
    backoff_max: float = Field(30.0, ge=0, description="Longest retry delay in seconds.")
    temperature: float = 0.0
    max_tokens: int = Field(512, ge=1)


@dataclass
class ChatResult:
    text: str | None
    error: str | None = None
    status: int | None = None
    attempts: int = 0
    finish_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rejected_constraints(self) -> bool:
        """The server refused the request because of a structured-output field it does not know
        (vLLM's `structured_outputs`/`guided_*`, or `response_format`) - not for any other 4xx."""
        if self.status not in (400, 422) or not self.error:
            return False
        return any(field in self.error for field in CONSTRAINT_FIELDS)


@dataclass
class LLMStats:
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def _api_key(env_name: str) -> str:
    # Local servers (vLLM without --api-key, transformers serve) accept any key.
    return os.environ.get(env_name) or "EMPTY"


def redact(text: str, secret: str) -> str:
    if secret and secret != "EMPTY" and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


class LLMClient:
    """Concurrent, retrying, never-raising chat completions.

    Safe to use from several event loops (TRL runs async rewards on its own loop): the underlying
    HTTP client and the semaphore are created per loop.
    """

    def __init__(self, config: LLMConfig):
        self.config = config
        self.stats = LLMStats()
        self._per_loop: dict[int, tuple[Any, asyncio.Semaphore]] = {}

    def _resources(self) -> tuple[Any, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        res = self._per_loop.get(id(loop))
        if res is None:
            from openai import AsyncOpenAI

            client = AsyncOpenAI(
                base_url=self.config.base_url,
                api_key=_api_key(self.config.api_key_env),
                timeout=self.config.timeout,
                max_retries=0,
            )
            res = (client, asyncio.Semaphore(self.config.concurrency))
            self._per_loop[id(loop)] = res
        return res

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        extra_body: dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        require_complete: bool = True,
    ) -> ChatResult:
        """One chat completion with retries; never raises (except for cancellation).

        An answer cut at `max_tokens` (finish_reason "length") is a failed attempt unless
        `require_complete` is off (model outputs under evaluation): a judge's, extractor's or
        teacher's half answer would otherwise be parsed, and cached, as a wrong result.
        """
        import openai
        from openai.types.chat import ChatCompletion

        key = _api_key(self.config.api_key_env)
        try:
            client, semaphore = self._resources()
        except Exception as exc:  # e.g. no file descriptors left: a failed request, not a crash
            self.stats.requests += 1
            self.stats.failed += 1
            return ChatResult(None, error=redact(f"client error: {type(exc).__name__}: {exc}", key))
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.config.max_tokens,
            "n": 1,
            **(extra_body or {}),
        }
        if response_format:
            body["response_format"] = response_format
        if seed is not None:
            body["seed"] = seed
        self.stats.requests += 1
        attempts = 0
        last_error, last_status = "no attempt made", None
        async with semaphore:
            while attempts <= self.config.max_retries:
                if attempts:
                    self.stats.retries += 1
                    await asyncio.sleep(self._delay(attempts))
                attempts += 1
                try:
                    # `post` skips the SDK's typed transformation of the request (about 2 ms of CPU per
                    # call for a few-shot judge prompt); the body is plain JSON already
                    resp = await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
                    choice = resp.choices[0] if resp.choices else None
                    text = choice.message.content if choice is not None else None
                    if text is None:
                        raise _EmptyCompletion("the server returned no message content")
                    if require_complete and choice.finish_reason == "length":
                        last_error, last_status = truncated_error(body["max_tokens"]), None
                        self.stats.count_error("truncated")
                        continue
                    self.stats.succeeded += 1
                    return ChatResult(text, attempts=attempts, finish_reason=choice.finish_reason)
                except asyncio.CancelledError:
                    raise
                except openai.APIStatusError as exc:
                    last_status = exc.status_code
                    last_error = f"HTTP {exc.status_code}: {_short(_error_message(exc))}"
                    self.stats.count_error(f"http_{exc.status_code}")
                    if exc.status_code not in RETRYABLE_STATUS:
                        break
                except openai.APITimeoutError:
                    last_error, last_status = f"timed out after {self.config.timeout:g}s", None
                    self.stats.count_error("timeout")
                except openai.APIConnectionError as exc:
                    cause = exc.__cause__ or exc
                    last_error, last_status = (
                        f"connection error: {_short(str(cause) or type(cause).__name__)}",
                        None,
                    )
                    self.stats.count_error("connection")
                except Exception as exc:  # malformed JSON, truncated bodies, missing fields
                    last_error, last_status = f"bad response: {type(exc).__name__}: {_short(str(exc))}", None
                    self.stats.count_error("bad_response")
        self.stats.failed += 1
        cut = "length" if last_error == truncated_error(body["max_tokens"]) else None
        return ChatResult(
            None, error=redact(last_error, key), status=last_status, attempts=attempts, finish_reason=cut
        )

    def _delay(self, retry: int) -> float:
        base = min(self.config.backoff_max, self.config.backoff * 2 ** (retry - 1))
        return base * random.uniform(0.5, 1.0)


class _EmptyCompletion(Exception):
    pass


def truncated_error(max_tokens: int) -> str:
    return f"truncated: the answer was cut at max_tokens={max_tokens} (finish_reason length)"


def _error_message(exc: Any) -> str:
    """The server's own message (`{"error": {"message"}}`, `{"detail"}`), not the client's wrapper."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if body.get("detail"):
            return str(body["detail"])
    return str(getattr(exc, "message", exc))


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def wait_for_server(base_url: str, timeout: float = 120.0) -> bool:
    """Poll `GET {base_url}/models` (or the server's /health) until it answers; True if it did."""
    import httpx

    deadline = time.monotonic() + timeout
    root = base_url.rstrip("/").removesuffix("/v1")
    while time.monotonic() < deadline:
        for url in (f"{root}/health", f"{base_url.rstrip('/')}/models"):
            try:
                if httpx.get(url, timeout=2.0).status_code < 500:
                    return True
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    return False
