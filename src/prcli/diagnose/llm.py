"""The three-way verdict asked of a text LLM (`--judge openai`): cached, and parsed strictly.

A verdict the model did not clearly give is not guessed: an answer without exactly one tag per fact,
in order, each `consistent`, `contradicted` or `absent`, fails the item (retried on the next run,
never cached).
"""

from __future__ import annotations

import re
from typing import Any

from prcli.cache import ResultCache, cache_key
from prcli.judge.prompt import format_annotations
from prcli.judge.statements import VERDICTS, Verdict
from prcli.llm import Constraint, Endpoint, LLMClient

PROMPT_VERSION = "pr-diagnose-v1"

SYSTEM = (
    "You check a solution to a math problem about a figure against facts read off that figure. "
    "For each numbered fact, decide what the solution says about it:\n"
    "- consistent: the solution states the fact as given;\n"
    "- contradicted: the solution states the same quantity, object or relation differently (for example "
    "another length for the same side, another measure for the same angle, perpendicular for parallel), "
    "that is, it misreads the figure;\n"
    "- absent: the solution does not state the fact.\n"
    "Judge only what the solution says about the figure, not whether its reasoning or answer is right. "
    "Answer with one tag per fact, in order, and nothing else: <info1>consistent</info1>, "
    "<info2>absent</info2>, and so on."
)

_TAG = re.compile(r"<info(\d+)>(.*?)</info(\d+)>", re.DOTALL)


def user_turn(facts: list[str], response: str) -> str:
    return f"Facts:\n{format_annotations(facts)}\n\nSolution:\n{response}\n"


def parse_three_way(text: str, n: int) -> list[Verdict]:
    """The verdicts of an answer holding exactly tags 1..n in order; ValueError for anything else."""
    tags = _TAG.findall(text)
    if [(int(o), int(c)) for o, _, c in tags] != [(k, k) for k in range(1, n + 1)]:
        raise ValueError(f"expected tags <info1>..<info{n}> in order, got {len(tags)} tag(s)")
    if _TAG.sub("", text).strip():
        raise ValueError("text outside the tags")
    verdicts = [v.strip().lower() for _, v, _ in tags]
    bad = [v for v in verdicts if v not in VERDICTS]
    if bad:
        raise ValueError(f"not a verdict: {bad[0][:40]!r}")
    return verdicts  # type: ignore[return-value]


def _shape(n: int) -> Constraint:
    one = "(consistent|contradicted|absent)"
    return Constraint("diagnose", regex="\\n?".join(f"<info{k}>{one}</info{k}>" for k in range(1, n + 1)))


class LLMVerdicts:
    """Asks `endpoint` for the verdicts of one response; answers are cached by content."""

    def __init__(self, endpoint: Endpoint, default_model: str, max_tokens: int, cache: ResultCache | None):
        self.client = LLMClient(endpoint, default_model=default_model, max_tokens=max_tokens)
        self.cache = cache
        self.max_tokens = max_tokens

    def _key(self, facts: list[str], response: str) -> str:
        return cache_key(
            role="diagnose",
            model=self.client.model,
            prompt_version=PROMPT_VERSION,
            facts=facts,
            response=response,
            decoding={"temperature": 0.0, "max_tokens": self.max_tokens},
        )

    async def __call__(self, facts: list[str], response: str) -> tuple[list[Verdict] | None, str | None]:
        """(verdicts, None), or (None, the error) when the call failed or its answer did not parse."""
        key = self._key(facts, response) if self.cache is not None else None
        if key is not None and self.cache is not None:
            hit: Any = self.cache.get(key)
            if hit is not None:
                return list(hit), None
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user_turn(facts, response)},
        ]
        result = await self.client.chat(messages, constraint=_shape(len(facts)))
        if not result.ok:
            return None, result.error
        try:
            verdicts = parse_three_way(result.text or "", len(facts))
        except ValueError as exc:
            return None, f"unparsable: {exc}"
        if key is not None and self.cache is not None:
            self.cache.put(key, verdicts)
        return verdicts, None

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
