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
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from prcli.config import EnvVarName, StageConfig

log = logging.getLogger("prcli.llm")

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
CONSTRAINT_FIELDS = ("structured_outputs", "guided_", "response_format", "json_schema")


Structured = Literal["auto", "vllm", "vllm-legacy", "json", "off"]


class Endpoint(StageConfig):
    """One LLM connection: where, which model, how hard to try.

    The same model in every stage that talks to an LLM (the perception judge, the CoT teacher, the
    annotation extractor, eval's answer judge and its generation server), nested under a prefix:
    `pr train --judge-base-url`, `pr annotate --teacher-model`, `pr judge --base-url`. The stage's
    command-line options and YAML keys are generated from these fields (`prcli.cli_common`), so
    the roles cannot drift apart.
    """

    base_url: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        description="Server URL, ending in /v1; repeat the option for several replicas of one model "
        "(each request goes to the one with the fewest in flight).",
    )
    model: str | None = Field(
        None, description="Model: the name the server knows it by (or alias/path for hf)."
    )
    api_key_env: EnvVarName = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never the key itself)."
    )
    concurrency: int = Field(64, ge=1, description="Requests in flight at most, over all URLs.")
    timeout: float = Field(60.0, gt=0, description="Seconds per request attempt.")
    max_retries: int = Field(3, ge=0, description="Retries of a failed request (exponential backoff).")
    backoff: float = Field(1.0, ge=0, description="First retry delay in seconds; doubles each retry.")
    structured: Structured = Field(
        "auto",
        description="Constrain the answer's shape: auto (vLLM's structured outputs, free text if the server "
        "refuses them), vllm, vllm-legacy (guided_regex), json (response_format JSON schema) or off.",
    )
    prompt: Path | None = Field(
        None, description="File with the role's system prompt, used verbatim (default: prcli's own)."
    )
    device: str = Field("auto", description="hf backend: torch device (auto, cpu, cuda, cuda:1, ...).")

    @field_validator("base_url", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        urls = [value] if isinstance(value, str) else value
        if isinstance(urls, list) and not urls:
            raise ValueError("give at least one URL")
        return urls

    def with_defaults(self, **defaults: Any) -> Endpoint:
        """A copy with `defaults` for the fields the user left unset (a role's own defaults)."""
        return self.model_copy(update={k: v for k, v in defaults.items() if k not in self.model_fields_set})


BACKOFF_MAX = 30.0  # longest retry delay, seconds


@dataclass(frozen=True)
class Constraint:
    """The exact shape an answer must take, for servers that constrain decoding: a regex, a JSON
    schema, or both (each structured mode uses what it can)."""

    name: str
    regex: str | None = None
    json_schema: dict[str, Any] | None = None

    def body(self, mode: Structured) -> dict[str, Any]:
        """The request fields that ask for this shape in `mode` (none for off, or nothing usable)."""
        if mode == "vllm":
            return {"structured_outputs": {"regex": self.regex} if self.regex else {"json": self.json_schema}}
        if mode == "vllm-legacy":
            return {"guided_regex": self.regex} if self.regex else {"guided_json": self.json_schema}
        if mode == "json" and self.json_schema is not None:
            schema = {"name": self.name, "schema": self.json_schema, "strict": True}
            return {"response_format": {"type": "json_schema", "json_schema": schema}}
        return {}


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

    def __init__(
        self,
        config: Endpoint,
        *,
        default_model: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
    ):
        if not (config.model or default_model):
            raise ValueError("an LLM endpoint needs a model name")
        self.config = config
        self.model = config.model or default_model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.stats = LLMStats()
        self._mode: Structured = "vllm" if config.structured == "auto" else config.structured
        self._per_loop: dict[int, tuple[Any, asyncio.Semaphore]] = {}

    def _resources(self) -> tuple[Any, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        res = self._per_loop.get(id(loop))
        if res is None:
            from openai import AsyncOpenAI

            client = AsyncOpenAI(
                base_url=self.config.base_url[0],
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
        constraint: Constraint | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        require_complete: bool = True,
    ) -> ChatResult:
        """One chat completion with retries; never raises (except for cancellation).

        An answer cut at `max_tokens` (finish_reason "length") is a failed attempt unless
        `require_complete` is off (model outputs under evaluation): a judge's, extractor's or
        teacher's half answer would otherwise be parsed, and cached, as a wrong result.

        `constraint` is asked for in the endpoint's structured mode. Under `auto`, a server that
        refuses vLLM's structured-output fields gets free text from then on (one warning), and this
        request is sent again without them.
        """
        mode = self._mode
        result = await self._chat(
            messages,
            constraint.body(mode) if constraint else {},
            max_tokens,
            temperature,
            seed,
            require_complete,
        )
        if constraint and result.rejected_constraints and self.config.structured == "auto" and mode != "off":
            if self._mode != "off":
                log.warning(
                    "%s rejected structured outputs (%s); using free-text answers", self.model, result.error
                )
                self._mode = "off"
            result = await self._chat(messages, {}, max_tokens, temperature, seed, require_complete)
        return result

    async def _chat(
        self,
        messages: list[dict[str, Any]],
        fields: dict[str, Any],
        max_tokens: int | None,
        temperature: float | None,
        seed: int | None,
        require_complete: bool,
    ) -> ChatResult:
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
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.max_tokens,
            "n": 1,
            **fields,
        }
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
        base = min(BACKOFF_MAX, self.config.backoff * 2 ** (retry - 1))
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
