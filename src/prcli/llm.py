"""One async client for every LLM role (judge, annotator, CoT teacher, answer judge, eval generation).

It speaks the OpenAI chat API to any compatible server (vLLM, SGLang, `transformers serve`, hosted
APIs) and never raises for a failed request: callers get a `ChatResult` with `error` set and decide
by their failure policy. There is exactly one retry layer (the openai client's own retries are off):
bounded concurrency, a per-request timeout, exponential backoff with jitter on connection errors,
timeouts, 429/5xx and malformed bodies. API keys come from an environment variable and are scrubbed
from every error message.

An endpoint may list several URLs (replicas of one model). Each attempt goes to the URL with the
fewest attempts in flight; a URL that fails (connection error, timeout, 408/409/425/429, 5xx) is
taken out of the rotation for a cooldown that doubles while it keeps failing, a server's
`Retry-After` (429/503) is the least time it stays out, and a retry goes to another URL when one
is in rotation. Per-URL telemetry is in `LLMClient.stats.endpoints`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from prcli.config import EnvVarName, ServerUrl, StageConfig

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

    base_url: list[ServerUrl] = Field(
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
    backoff: float = Field(
        1.0,
        ge=0,
        description="First retry delay in seconds, doubling each retry (a retry that can go to another URL "
        "goes at once).",
    )
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
# A failing URL is out for COOLDOWN_FIRST seconds, doubling while it fails again as soon as it is
# back, up to COOLDOWN_MAX: one second lets the attempts in flight drain to the other replicas and
# brings back a replica that only shed a burst within a training step; the doubling means a dead
# replica costs a few attempts per half minute (each retried elsewhere) instead of one per request.
COOLDOWN_FIRST = 1.0
COOLDOWN_MAX = 30.0
# A server's Retry-After is honoured up to a minute: a longer one (hours, from a hosted API's daily
# quota) would stall a training step far past any timeout; past it the retries and the caller's
# failure policy decide.
RETRY_AFTER_MAX = 60.0
LATENCY_WINDOW = 1024  # answered attempts per URL kept for its latency quantiles


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
class EndpointStats:
    """One URL's traffic and health, for the summaries of `pr judge`/`pr annotate` and training metrics.

    `requests` and `failures` count attempts (a retry is a request too; a failure is an attempt that
    gave no usable answer, for whatever reason); `taken_out` counts the times the URL left the
    rotation. Latencies are those of the last LATENCY_WINDOW answered attempts, so memory stays
    bounded over a long run.
    """

    url: str
    requests: int = 0
    failures: int = 0
    in_flight: int = 0
    taken_out: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW), repr=False)

    def latency(self, q: float) -> float | None:
        """The q-quantile (nearest rank) of the recent answered attempts' seconds; None before any."""
        ordered = sorted(self.latencies)
        if not ordered:
            return None
        return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "requests": self.requests,
            "failures": self.failures,
            "in_flight": self.in_flight,
            "taken_out": self.taken_out,
            "p50_s": self.latency(0.5),
            "p95_s": self.latency(0.95),
        }


@dataclass
class LLMStats:
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    endpoints: list[EndpointStats] = field(default_factory=list)  # one per URL, in base_url order

    def count_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def endpoint_dicts(self) -> list[dict[str, Any]]:
        return [ep.as_dict() for ep in self.endpoints]

    def endpoint_metrics(self, prefix: str) -> dict[str, float]:
        """The per-URL numbers flat, for a metrics log: `{prefix}/endpoint/{i}/{name}`, i the URL's
        place in base_url; latencies are left out until the URL has answered."""
        return {
            f"{prefix}/endpoint/{i}/{name}": value
            for i, ep in enumerate(self.endpoints)
            for name, value in ep.as_dict().items()
            if name != "url" and value is not None
        }


def retry_after_seconds(value: str | None) -> float | None:
    """The wait a `Retry-After` header asks for (delta-seconds or an HTTP date), capped at
    RETRY_AFTER_MAX; None when there is none or it cannot be read."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


@dataclass
class _Attempt:
    """One attempt's outcome: the answer, or the error and what it says about the URL."""

    text: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    status: int | None = None
    retryable: bool = True  # worth another attempt
    fault: bool = False  # the URL's fault: it leaves the rotation for a while
    retry_after: float | None = None  # seconds the server asked to be left alone (429/503)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Upstream:
    """One URL's place in the rotation."""

    index: int
    stats: EndpointStats
    out_until: float = 0.0  # clock time before which it gets no attempt
    cooldown: float = 0.0  # its last time out for a fault; 0 once it has answered again


class _Pool:
    """Which URL gets the next attempt, and which are out of the rotation until when.

    Shared by every event loop that uses the client (a dead replica is dead for all of them), so a
    thread lock guards it; it is never held across an await.
    """

    def __init__(self, urls: list[str], clock: Callable[[], float] = time.monotonic):
        self.upstreams = [_Upstream(i, EndpointStats(url)) for i, url in enumerate(urls)]
        self._clock = clock
        self._lock = threading.Lock()
        self._turn = 0

    def take(self, avoid: _Upstream | None = None) -> _Upstream | None:
        """The URL in rotation, other than `avoid`, with the fewest attempts in flight (ties in
        turn), booked as sent; None when there is none."""
        now = self._clock()
        with self._lock:
            ready = [u for u in self.upstreams if u.out_until <= now and u is not avoid]
            if not ready:
                return None
            fewest = min(u.stats.in_flight for u in ready)
            ties = [u for u in ready if u.stats.in_flight == fewest]
            up = ties[self._turn % len(ties)]
            self._turn += 1
            up.stats.in_flight += 1
            up.stats.requests += 1
            return up

    async def acquire(self) -> _Upstream:
        """A URL for an attempt; when every one is out, wait (spending no attempt) for the earliest back."""
        while (up := self.take()) is None:
            await asyncio.sleep(max(0.0, min(u.out_until for u in self.upstreams) - self._clock()))
        return up

    def done(self, up: _Upstream, attempt: _Attempt | None, seconds: float) -> None:
        """Book the end of an attempt (None: cancelled). A fault takes the URL out, unless it is the
        only one (nowhere else to send; the backoff spaces its retries) or already out (attempts
        sent before it left end one by one: the cooldown grows once per return, not per attempt);
        a Retry-After keeps it out at least that long."""
        now = self._clock()
        with self._lock:
            up.stats.in_flight -= 1
            if attempt is None:
                return
            if attempt.ok:
                up.stats.latencies.append(seconds)
                up.cooldown = 0.0
                return
            up.stats.failures += 1
            back = now + (attempt.retry_after or 0.0)
            if attempt.fault and len(self.upstreams) > 1 and up.out_until <= now:
                up.cooldown = min(COOLDOWN_MAX, 2 * up.cooldown) if up.cooldown else COOLDOWN_FIRST
                back = max(back, now + up.cooldown)
            if back > max(up.out_until, now):
                up.stats.taken_out += up.out_until <= now
                up.out_until = back


def _api_key(env_name: str) -> str:
    # Local servers (vLLM without --api-key, transformers serve) accept any key.
    return os.environ.get(env_name) or "EMPTY"


def redact(text: str, secret: str) -> str:
    if secret and secret != "EMPTY" and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


class LLMClient:
    """Concurrent, retrying, never-raising chat completions over one or more URLs.

    Safe to use from several event loops (TRL runs async rewards on its own loop): the HTTP
    clients (one per URL) and the semaphore (over all URLs) are created per loop; the rotation
    and the telemetry are shared.
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
        self._pool = _Pool(config.base_url)
        self.stats = LLMStats(endpoints=[up.stats for up in self._pool.upstreams])
        self._mode: Structured = "vllm" if config.structured == "auto" else config.structured
        self._per_loop: dict[int, tuple[list[Any], asyncio.Semaphore]] = {}

    def _resources(self) -> tuple[list[Any], asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        res = self._per_loop.get(id(loop))
        if res is None:
            from openai import AsyncOpenAI

            key = _api_key(self.config.api_key_env)
            clients = [
                AsyncOpenAI(base_url=url, api_key=key, timeout=self.config.timeout, max_retries=0)
                for url in self.config.base_url
            ]
            res = (clients, asyncio.Semaphore(self.config.concurrency))
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
        key = _api_key(self.config.api_key_env)
        try:
            clients, semaphore = self._resources()
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
        last = _Attempt(error="no attempt made")
        failed_at: _Upstream | None = None
        async with semaphore:
            while attempts <= self.config.max_retries:
                if attempts:
                    self.stats.retries += 1
                # a retry goes at once to another URL in rotation: the backoff is there to spare
                # one struggling server, and Retry-After and the cooldowns are kept by the pool
                up = self._pool.take(avoid=failed_at)
                if up is None:
                    if attempts:
                        await asyncio.sleep(self._delay(attempts))
                    up = await self._pool.acquire()
                attempts += 1
                started = time.monotonic()
                try:
                    outcome = await self._attempt(clients[up.index], body, require_complete)
                except BaseException:  # cancelled: the URL's in-flight count must come down all the same
                    self._pool.done(up, None, 0.0)
                    raise
                self._pool.done(up, outcome, time.monotonic() - started)
                if outcome.ok:
                    self.stats.succeeded += 1
                    return ChatResult(outcome.text, attempts=attempts, finish_reason=outcome.finish_reason)
                last, failed_at = outcome, up
                if not outcome.retryable:
                    break
        self.stats.failed += 1
        return ChatResult(
            None,
            error=redact(last.error or "", key),
            status=last.status,
            attempts=attempts,
            finish_reason=last.finish_reason,
        )

    async def _attempt(self, client: Any, body: dict[str, Any], require_complete: bool) -> _Attempt:
        """One request to one URL: the answer, or the error and whether it was the URL's fault."""
        import openai
        from openai.types.chat import ChatCompletion

        try:
            # `post` skips the SDK's typed transformation of the request (about 2 ms of CPU per
            # call for a few-shot judge prompt); the body is plain JSON already
            resp = await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
            choice = resp.choices[0] if resp.choices else None
            text = choice.message.content if choice is not None else None
            if text is None:
                raise _EmptyCompletion("the server returned no message content")
            if require_complete and choice.finish_reason == "length":
                self.stats.count_error("truncated")
                return _Attempt(error=truncated_error(body["max_tokens"]), finish_reason="length")
            return _Attempt(text=text, finish_reason=choice.finish_reason)
        except openai.APIStatusError as exc:
            code = exc.status_code
            self.stats.count_error(f"http_{code}")
            retryable = code in RETRYABLE_STATUS
            return _Attempt(
                error=f"HTTP {code}: {_short(_error_message(exc))}",
                status=code,
                retryable=retryable,
                fault=retryable,  # any other 4xx is the request's fault, not the URL's
                retry_after=retry_after_seconds(exc.response.headers.get("retry-after"))
                if code in (429, 503)
                else None,
            )
        except openai.APITimeoutError:
            self.stats.count_error("timeout")
            return _Attempt(error=f"timed out after {self.config.timeout:g}s", fault=True)
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            self.stats.count_error("connection")
            return _Attempt(
                error=f"connection error: {_short(str(cause) or type(cause).__name__)}", fault=True
            )
        except Exception as exc:  # malformed JSON, truncated bodies, missing fields
            self.stats.count_error("bad_response")
            return _Attempt(error=f"bad response: {type(exc).__name__}: {_short(str(exc))}")

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
