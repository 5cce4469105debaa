"""How `pr eval` turns a response into a verdict: the three scoring protocols.

* `rules` (offline): rule extraction, then each benchmark's official normaliser and comparator.
* `official`: each benchmark's own published pipeline, an OpenAI-compatible model standing in for
  the GPT model it names (MathVista: its rule shortcuts, else few-shot LLM extraction, then its
  normaliser; MathVerse: LLM extraction of the last 30 words, then an LLM 0/1 judgement against
  the answer; EMMA: its `--gpt_eval` path, an LLM correct/incorrect judgement of the response).
  Benchmarks whose official scoring is rule-based use their rules and say so.
* `paper`: Perception-R1's evaluation (reference/method.md 4.3): the first `<answer>` block, else
  LLM extraction; then an LLM true/false judgement of every item against the ground truth.

The prompts are ours, with the published structure (instruction, the same kind and number of
worked examples, the same answer slot); a file can replace the instruction and examples of the
first LLM step (`--extract-prompt`) or of the judgement (`--answer-judge-prompt`), for the exact
published text. Every LLM step looks at every item it decides: a verdict can go either way.
LLM answers are cached (model + prompt hash + the item's messages); a call that fails, or an answer
that cannot be read, fails that item only (`CallFailed`): it is not written and the next run asks
again.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from prcli.cache import ResultCache, cache_key
from prcli.concurrency import run_sync
from prcli.errors import StageError
from prcli.eval.base import LETTERS, Benchmark, Sample
from prcli.jsonl import InputError, LineProblem
from prcli.llm import Endpoint, LLMClient
from prcli.sandbox import SandboxPool

ProtocolName = Literal["rules", "official", "paper"]
PROTOCOLS: tuple[ProtocolName, ...] = ("rules", "official", "paper")
T = TypeVar("T")

# ----------------------------------------------------------------------------- prompts

MATHVISTA_EXTRACT = """\
Below is a question and a model's response to it. Copy out the final answer the response gives, \
in the form the hint asks for, and write nothing else.

Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.
Question: How many apples are left in the basket?

Model response: There were 9 apples and 4 of them were eaten, so 5 apples are left.

Extracted answer: 5

Hint: Please answer the question requiring a floating-point number with one decimal place and provide the \
final value, e.g., 1.2, 1.3, 1.4, at the end.
Question: What is the mean rainfall of the three months in the chart? (Unit: cm)

Model response: The bars read 2.4, 3.1 and 3.4 cm; their mean is 8.9 / 3, about 3.0 cm.

Extracted answer: 3.0

Hint: Please answer the question requiring a floating-point number with two decimal places and provide the \
final value, e.g., 1.23, 1.34, 1.45, at the end.
Question: What is the slope of the line through the two marked points?

Model response: The points are (0, 1.5) and (4, 3.25), so the slope is 1.75 / 4 = 0.4375, or 0.44 to two places.

Extracted answer: 0.44

Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., \
[1, 2, 3], [1.2, 1.3, 1.4], at the end.
Question: In which years of the table were sales above 200?

Model response: Sales rose above 200 in 2012 and again in 2015; every other year stayed below.

Extracted answer: [2012, 2015]

Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.
Question: Which shape has the largest area?
Choices:
(A) the circle
(B) the square
(C) the triangle
(D) the hexagon

Model response: The square has side 4 and area 16, more than any other shape, so the answer is (B).

Extracted answer: B"""

MATHVERSE_EXTRACT = """\
You are given a model's response to a math problem, the 'Model response'. Extract the final answer \
it commits to and output only that answer, with no explanation. If it gives no answer, output null.

Model response: 'Both inequalities hold for x above 1 and up to 4 inclusive, so the solution set is (1, 4].'
Extracted Answer: (1, 4]

Model response: 'Comparing the measured angle with each option, only option D gives 65°.'
Extracted Answer: D

Model response: 'The square root needs x - 2 >= 0, so the domain is x >= 2, and the function takes every \
value from 0 upward.'
Extracted Answer: Domain: [2, +∞); Range: [0, +∞)

Model response: 'The figure is too blurry to read the side lengths, so I cannot solve this problem.'
Extracted Answer: null

Model response: 'By Pythagoras the hypotenuse is sqrt(12^2 + 18.7^2), about 22.3 cm.'
Extracted Answer: 22.3

Model response: 'The line passes through (0, 3) with slope -2, hence its equation is y = -2x + 3.'
Extracted Answer: y = -2x + 3"""

MATHVERSE_JUDGE = """\
Decide whether the [Model_answer] agrees with the [Standard Answer] of the [Question]. Output 1 only \
when they agree completely: for a multiple-choice question the same option; for any other question \
the same value, where an equivalent form or the same quantity in other units counts (0.5 m and 50 cm). \
Otherwise output 0. Output only 1 or 0.

[Question]: Find the measure of angle B.
Choices:
A: 30°
B: 45°
C: 60°
D: 75°
[Standard Answer]: C
[Model_answer] : C
Judgement: 1

[Question]: How long is side AC, in meters?
[Standard Answer]: 0.5 m
[Model_answer] : 50 cm
Judgement: 1

[Question]: What is the area of the shaded region?
[Standard Answer]: 12\\pi
[Model_answer] : 12
Judgement: 0

[Question]: Which point lies on the graph of the function?
Choices:
A: (1, 2)
B: (2, 3)
C: (3, 5)
D: (4, 6)
[Standard Answer]: B
[Model_answer] : A
Judgement: 0"""

EMMA_JUDGE = """\
Compare the model's response with the reference answer and say whether the final answer of the \
response is correct. Reply with one word: Correct or Incorrect.

Response: The car covers 120 km in 1.5 hours, so its average speed is \\boxed{80} km/h.
Answer: 80
Correct_or_not: Correct

Response: Following the path from the start, it leaves on the right side, so the answer is \\boxed{B}.
Answer: D
Correct_or_not: Incorrect"""

PAPER_JUDGE = (
    "You are given a model's **Response** to a question and the **Ground Truth Answer**. Judge if the "
    "**Response** is correct based on the **Ground Truth Answer**. Reply 'true' if it is correct, otherwise "
    "reply 'false'. Reply with that single word."
)


@dataclass(frozen=True)
class Prompt:
    """One LLM step's prompt: the instruction and worked examples (`block`, which a file may
    replace), then the item in `slot` (str.format fields). `system`: the block is the system
    message and the item the user turn (Perception-R1's judge); else one user message."""

    name: str
    block: str
    slot: str
    system: bool = False

    def messages(self, **fields: str) -> list[dict[str, str]]:
        item = self.slot.format(**fields)
        if self.system:
            return [{"role": "system", "content": self.block.strip()}, {"role": "user", "content": item}]
        return [{"role": "user", "content": f"{self.block.strip()}\n\n{item}"}]

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"{self.system}\x1e{self.block}\x1e{self.slot}".encode()).hexdigest()[:16]

    def from_file(self, path: Path | None) -> Prompt:
        """This prompt with its instruction and examples read from `path` (None: unchanged)."""
        if path is None:
            return self
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError([LineProblem(Path(path), 0, f"cannot read the prompt file: {exc}")]) from None
        if not text.strip():
            raise InputError([LineProblem(Path(path), 0, "the prompt file is empty")])
        return replace(self, block=text)


def _answers_tagged(block: str) -> str:
    """Perception-R1's extraction prompts: the benchmark's examples, their answers in <answer> tags."""
    return re.sub(r"^(Extracted [Aa]nswer: )(.+)$", r"\1<answer>\2</answer>", block, flags=re.MULTILINE)


MATHVISTA_SLOT = "{query}\n\nModel response: {response}\n\nExtracted answer: "
MATHVERSE_SLOT = "Model response: '{response}'\nExtracted Answer: "
PROMPTS = {
    "mathvista_extract": Prompt("mathvista_extract", MATHVISTA_EXTRACT, MATHVISTA_SLOT),
    "mathverse_extract": Prompt("mathverse_extract", MATHVERSE_EXTRACT, MATHVERSE_SLOT),
    "mathverse_judge": Prompt(
        "mathverse_judge",
        MATHVERSE_JUDGE,
        "[Question]: {question}\n[Standard Answer]: {answer}\n[Model_answer] : {extraction}\nJudgement: ",
    ),
    "emma_judge": Prompt("emma_judge", EMMA_JUDGE, "Response: {response}\nAnswer: {answer}\nCorrect_or_not:"),
    "paper_extract_mathvista": Prompt(
        "paper_extract_mathvista", _answers_tagged(MATHVISTA_EXTRACT), MATHVISTA_SLOT
    ),
    "paper_extract_mathverse": Prompt(
        "paper_extract_mathverse", _answers_tagged(MATHVERSE_EXTRACT), MATHVERSE_SLOT
    ),
    "paper_judge": Prompt(
        "paper_judge",
        PAPER_JUDGE,
        "{choices}**Response**: {response}\n**Ground Truth Answer**: {answer}",
        system=True,
    ),
}

# ----------------------------------------------------------------------------- answers


class CallFailed(Exception):
    """An LLM step gave no usable answer for one item: the item is not written, the next run retries."""


def read_zero_one(text: str) -> bool:
    """MathVerse's judgement: 1 or 0 (the official script asks again until it gets one)."""
    m = re.fullmatch(r"\s*(?:judgement:\s*)?\**([01])\**\s*\.?\s*", text, re.IGNORECASE)
    if not m:
        raise CallFailed(f"the judgement is not 1 or 0: {text[:80]!r}")
    return m.group(1) == "1"


def read_correct(text: str) -> bool:
    """EMMA's judgement: Correct or Incorrect."""
    word = text.strip().strip("*.'\"").lower()
    if word not in ("correct", "incorrect"):
        raise CallFailed(f"the judgement is not Correct or Incorrect: {text[:80]!r}")
    return word == "correct"


def read_true_false(text: str) -> bool:
    """Perception-R1's judgement: true or false."""
    words = text.strip().lower().replace("*", "").replace("'", "").replace('"', "").split()
    if words and (words[0].startswith("true") or words[0] == "correct"):
        return True
    if words and (words[0].startswith("false") or words[0] == "incorrect"):
        return False
    raise CallFailed(f"the judgement is not true or false: {text[:80]!r}")


_ANSWER_TAG = re.compile(r"<answer>(.+?)</answer>", re.DOTALL)


def answer_block(text: str) -> str | None:
    """The first `<answer>` block (Perception-R1's `<answer>(.+?)</answer>`, DOTALL)."""
    m = _ANSWER_TAG.search(text)
    return m.group(1).strip() if m else None


def strip_label(text: str) -> str:
    """An extraction without a repeated label (`Extracted Answer: 5` -> `5`), as the official scripts strip it."""
    return re.sub(r"^\s*extracted answer\s*:\s*", "", text.strip(), flags=re.IGNORECASE).strip()


def read_extraction(text: str) -> str:
    """An extraction, refused when empty: an empty answer is a server fault, not the response's answer
    (MathVista's normaliser would map it to the nearest choice and score it), so it fails the item
    and is never cached."""
    extraction = strip_label(text)
    if not extraction:
        raise CallFailed("the extraction is empty")
    return extraction


def last_words(text: str, n: int = 30) -> str:
    """MathVerse's `--trunk_response 30`: only the response's last n words go to the extractor."""
    return " ".join(text.split()[-n:])


def choices_line(choices: list[str] | None) -> str:
    return (
        "**Choices**: " + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)) + "\n"
        if choices
        else ""
    )


# ----------------------------------------------------------------------------- the LLM


class PromptedLLM:
    """The protocols' LLM (the answer-judge connection): concurrent, retrying, cached, never raising
    for a failed call (the item fails instead)."""

    def __init__(self, endpoint: Endpoint, cache: ResultCache | None):
        self.client = LLMClient(endpoint)
        self.cache = cache

    @property
    def model(self) -> str:
        return str(self.client.model)

    async def ask(
        self, prompt: Prompt, read: Callable[[str], T], max_tokens: int, **fields: str
    ) -> tuple[T, str]:
        """(what `read` makes of the answer, the answer). Only an answer `read` accepts is cached."""
        messages = prompt.messages(**fields)
        key = cache_key(
            kind="pr-eval", model=self.model, prompt=prompt.hash, messages=messages, max_tokens=max_tokens
        )
        cached = self.cache.get(key) if self.cache is not None else None
        if isinstance(cached, str):
            return read(cached), cached
        result = await self.client.chat(messages, temperature=0.0, max_tokens=max_tokens)
        if not result.ok or result.text is None:
            raise CallFailed(f"{prompt.name}: {result.error}")
        try:
            value = read(result.text)
        except CallFailed as exc:
            raise CallFailed(f"{prompt.name}: {exc}") from None
        if self.cache is not None:
            self.cache.put(key, result.text)
        return value, result.text

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


# ----------------------------------------------------------------------------- protocols

Outcome = dict[str, Any] | CallFailed  # the scored fields of an item, or why it failed


class Protocol:
    """Decides a chunk of responses: `decide` gives one Outcome per response, in order."""

    name: ClassVar[ProtocolName]
    pipeline: str  # what produced the verdicts, in words (summary.json)

    def decide(self, samples: list[Sample], responses: list[str]) -> list[Outcome]:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """What the verdicts depend on besides the item: part of every item's input hash."""
        return {"protocol": self.name}

    def describe(self) -> dict[str, Any]:
        """The summary.json fields that say how the scores were produced."""
        return {"protocol": self.name, "pipeline": self.pipeline, "llm": None}

    def close(self) -> None:
        pass


class Rules(Protocol):
    """Each benchmark's rule scorer, in process or in sandboxed workers when it calls sympy."""

    name = "rules"
    pipeline = "rule extraction, then the benchmark's official normaliser and comparator"

    def __init__(self, bench: Benchmark, timeout: float):
        self.bench = bench
        self.pool = SandboxPool(timeout=timeout) if bench.sandboxed else None
        cls = type(bench)
        self.fn = f"{cls.__module__}:{cls.__name__}.score"

    def decide(self, samples: list[Sample], responses: list[str]) -> list[Outcome]:
        tasks = [[self.bench.score_input(s), r] for s, r in zip(samples, responses, strict=True)]
        if self.pool is None:
            return [self.bench.score(t, r) for t, r in tasks]
        timeout = {"correct": False, "extracted": None, "prediction": None, "method": "timeout"}
        return [r if r is not None else dict(timeout) for r in self.pool.call(self.fn, tasks, default=None)]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class OfficialRules(Rules):
    """`official` on a benchmark whose published scoring is rule-based: its rules, said so."""

    name = "official"
    pipeline = "the benchmark's official scoring is rule-based: its rules, no LLM"

    def __init__(self, bench: Benchmark, score_timeout: float):
        super().__init__(bench, score_timeout)
        if bench.name == "mmstar":  # our one deviation from an official rule, said where the score is
            self.pipeline = (
                "MMStar's official scoring is rule-based: its first-letter rule, applied by prcli only to "
                "letter-like answers (free text is read for its committed option, else undecided)"
            )


class LLMProtocol(Protocol):
    """A protocol whose steps ask an LLM, one item at a time, all items of a chunk concurrently."""

    prompts: dict[str, Prompt]

    def __init__(self, bench: Benchmark, llm: PromptedLLM):
        self.bench = bench
        self.llm = llm

    async def decide_one(self, sample: Sample, response: str) -> dict[str, Any]:
        raise NotImplementedError

    def decide(self, samples: list[Sample], responses: list[str]) -> list[Outcome]:
        async def guarded(sample: Sample, response: str) -> Outcome:
            try:
                return await self.decide_one(sample, response)
            except CallFailed as exc:
                return exc

        async def all_of() -> list[Outcome]:
            return list(await asyncio.gather(*map(guarded, samples, responses)))

        return run_sync(all_of()) if samples else []

    def fingerprint(self) -> dict[str, Any]:
        return {"protocol": self.name, **self._llm_facts()}

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.name, "pipeline": self.pipeline, "llm": self._llm_facts()}

    def _llm_facts(self) -> dict[str, Any]:
        return {"model": self.llm.model, "prompts": {p.name: p.hash for p in self.prompts.values()}}

    def close(self) -> None:
        self.llm.close()


class OfficialMathVista(LLMProtocol):
    """MathVista's `extract_answer.py` then `calculate_score.py`: the rule shortcuts (empty, a choice
    verbatim, a bare number), else the few-shot extraction; then the official normaliser."""

    name = "official"
    pipeline = "MathVista: rule shortcuts, else few-shot LLM answer extraction; then the official normaliser"

    def __init__(self, bench: Benchmark, llm: PromptedLLM, extract: Prompt):
        super().__init__(bench, llm)
        self.prompts = {"extract": extract}

    async def decide_one(self, sample: Sample, response: str) -> dict[str, Any]:
        from prcli.eval.mathvista import official_shortcut

        task = self.bench.score_input(sample)
        response = response.strip()
        extraction, method = official_shortcut(response, task), "official_rule"
        if extraction is None:
            extraction, _ = await self.llm.ask(
                self.prompts["extract"], read_extraction, 256, query=sample.raw["query"], response=response
            )
            method = "llm_extraction"
        return {**self.bench.score_extracted(task, extraction), "method": method}


class OfficialMathVerse(LLMProtocol):
    """MathVerse's two stages: extraction from the last 30 words (`--trunk_response 30`), then the
    0/1 judgement of the extraction against the standard answer, with the `question` field."""

    name = "official"
    pipeline = "MathVerse: LLM answer extraction (last 30 words), then LLM 0/1 judgement against the answer"

    def __init__(self, bench: Benchmark, llm: PromptedLLM, extract: Prompt, judge: Prompt):
        super().__init__(bench, llm)
        self.prompts = {"extract": extract, "judge": judge}

    async def decide_one(self, sample: Sample, response: str) -> dict[str, Any]:
        extraction, _ = await self.llm.ask(
            self.prompts["extract"], read_extraction, 256, response=last_words(response)
        )
        correct, raw = await self.llm.ask(
            self.prompts["judge"],
            read_zero_one,
            16,
            question=sample.question,
            answer=str(sample.answer),
            extraction=extraction,
        )
        return {
            "correct": correct,
            "extracted": extraction,
            "prediction": extraction,
            "method": "llm_judge",
            "judge_raw": raw,
        }


class OfficialEMMA(LLMProtocol):
    """EMMA's `evaluate.py --gpt_eval`: an empty response is wrong; any other is judged Correct or
    Incorrect against the answer by the LLM (two worked examples)."""

    name = "official"
    pipeline = "EMMA: LLM correct/incorrect judgement of the response against the answer (--gpt_eval)"

    def __init__(self, bench: Benchmark, llm: PromptedLLM, judge: Prompt):
        super().__init__(bench, llm)
        self.prompts = {"judge": judge}

    async def decide_one(self, sample: Sample, response: str) -> dict[str, Any]:
        if not response.strip():
            return {"correct": False, "extracted": None, "prediction": None, "method": "empty"}
        correct, raw = await self.llm.ask(
            self.prompts["judge"], read_correct, 16, response=response, answer=str(sample.answer)
        )
        return {
            "correct": correct,
            "extracted": None,
            "prediction": None,
            "method": "llm_judge",
            "judge_raw": raw,
        }


class Paper(LLMProtocol):
    """Perception-R1's `qwen_judge_*_v4.py`: the `<answer>` block, else LLM extraction with the
    benchmark's few-shot prompt (MathVerse-style for MathVerse and We-Math, MathVista-style for the
    rest); then the true/false judgement of every item (the choices, the extracted answer and the
    ground truth). Temperature 0 and 128 tokens, as the paper's judge."""

    name = "paper"
    pipeline = (
        "Perception-R1: <answer> block, else LLM extraction; then LLM true/false judgement of every item"
    )
    MATHVERSE_STYLE: ClassVar[tuple[str, ...]] = ("mathverse", "wemath")

    def __init__(self, bench: Benchmark, llm: PromptedLLM, extract: Prompt, judge: Prompt):
        super().__init__(bench, llm)
        self.prompts = {"extract": extract, "judge": judge}

    async def decide_one(self, sample: Sample, response: str) -> dict[str, Any]:
        extracted, method = answer_block(response), "answer_tag"
        if extracted is None:
            fields = {"response": response}
            if self.bench.name not in self.MATHVERSE_STYLE:
                fields["query"] = self.bench.question_text(sample)
            text, _ = await self.llm.ask(self.prompts["extract"], read_extraction, 128, **fields)
            extracted, method = answer_block(text) or text, "llm_extraction"
        correct, raw = await self.llm.ask(
            self.prompts["judge"],
            read_true_false,
            128,
            choices=choices_line(sample.choices),
            response=extracted,
            answer=str(sample.answer),
        )
        return {
            "correct": correct,
            "extracted": extracted,
            "prediction": extracted,
            "method": method,
            "judge_raw": raw,
        }


# ----------------------------------------------------------------------------- choosing one


OFFICIAL_LLM = ("mathvista", "mathverse", "emma")  # the benchmarks whose published scoring asks an LLM


def build_protocol(
    name: ProtocolName,
    bench: Benchmark,
    *,
    score_timeout: float,
    endpoint: Endpoint,
    cache: Callable[[], ResultCache | None],
    extract_prompt: Path | None = None,
) -> Protocol:
    """The protocol for `bench`. Prompt files are read here, before anything is written; `cache`
    opens the LLM answer cache (only a protocol that asks an LLM opens it).

    `extract_prompt` replaces the instruction and examples of the first LLM step (for EMMA, whose
    LLM path is one judgement, that judgement's); the endpoint's `prompt` those of the judgement."""
    if name == "rules":
        return Rules(bench, score_timeout)
    judge_file = endpoint.prompt
    if name == "official" and bench.name not in OFFICIAL_LLM:
        if extract_prompt is not None or judge_file is not None:
            raise StageError(
                f"{bench.name}'s official scoring is rule-based: there is no LLM prompt for "
                "--extract-prompt or --answer-judge-prompt to replace"
            )
        return OfficialRules(bench, score_timeout)
    if name == "paper":
        style = "mathverse" if bench.name in Paper.MATHVERSE_STYLE else "mathvista"
        extract = PROMPTS[f"paper_extract_{style}"].from_file(extract_prompt)
        return Paper(
            bench, PromptedLLM(endpoint, cache()), extract, PROMPTS["paper_judge"].from_file(judge_file)
        )
    if bench.name == "mathvista":
        if judge_file is not None:  # refused, not silently ignored
            raise StageError("MathVista's official pipeline has no LLM judgement for --answer-judge-prompt")
        extract = PROMPTS["mathvista_extract"].from_file(extract_prompt)
        return OfficialMathVista(bench, PromptedLLM(endpoint, cache()), extract)
    if bench.name == "mathverse":
        extract = PROMPTS["mathverse_extract"].from_file(extract_prompt)
        judge = PROMPTS["mathverse_judge"].from_file(judge_file)
        return OfficialMathVerse(bench, PromptedLLM(endpoint, cache()), extract, judge)
    if extract_prompt is not None and judge_file is not None:
        raise StageError(
            "EMMA's official LLM step is one judgement: give --extract-prompt or --answer-judge-prompt"
        )
    judge = PROMPTS["emma_judge"].from_file(extract_prompt or judge_file)
    return OfficialEMMA(bench, PromptedLLM(endpoint, cache()), judge)


__all__ = ["PROMPTS", "PROTOCOLS", "CallFailed", "Outcome", "Prompt", "Protocol", "build_protocol"]
