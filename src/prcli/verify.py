"""Answer verification with math-verify, isolated in worker processes under a hard timeout.

`math_equal` is the pure comparison; `VerifierPool` runs it in sandboxed workers (`prcli.sandbox`),
where a timed-out item counts as not equal and the worker is replaced.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
from collections.abc import Sequence

from prcli.sandbox import SandboxPool

_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")
# We enforce timeouts ourselves (by killing workers); silence math-verify's note that its own are off.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def _parse_gold(gold: str) -> list:
    """Parse a ground truth; bare LaTeX is wrapped in `$..$` first.

    math-verify reads an undelimited `2\\sqrt{3}` as `2` (the official code's gold parse has this
    defect); inside `$..$` it reads `2*sqrt(3)`.
    """
    from math_verify import parse

    gold = gold.strip()
    parsed = [] if "$" in gold or "\\boxed" in gold else parse(f"${gold}$", parsing_timeout=None)
    return parsed or parse(gold, parsing_timeout=None)


_BOXED_LETTER = re.compile(r"\\boxed\{\s*(?:\\text\{)?\(?([A-Z])\)?(?:[.:}][^{}]*)?\}?\s*\}")
_ANSWER_LETTER = re.compile(r"answer\s*(?:is|:)?\s*:?\s*\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE)


def choice_letter(text: str) -> str | None:
    """The option letter a response commits to: the last `\\boxed{B}`, else the last
    "answer is (B)" / "Answer: B", else a response that is only a letter; None if none."""
    boxed = _BOXED_LETTER.findall(text)
    if boxed:
        return boxed[-1]
    stated = [m.group(1) for m in _ANSWER_LETTER.finditer(text) if m.group(1).isupper()]
    if stated:
        return stated[-1]
    bare = _LETTER.match(text.strip())
    return bare.group(1) if bare else None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{}`) with balanced braces; `\\text{}` unwrapped."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            content = text[start : i - 1].strip()
            inner = re.fullmatch(r"\\text(?:bf)?\{(.*)\}", content, re.DOTALL)
            return inner.group(1).strip() if inner else content
    return None


_WORDS = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]+)*")
# words math-verify reads as the constants or values they name
_MATH_WORDS = {"pi", "inf", "infinity", "oo", "undefined", "nan"}


def _word_answer(prediction: str, gold: str) -> bool | None:
    """A gold that is a word or words (a colour, yes/no, a name) is compared as words; None otherwise.

    math-verify reads `no` as the product n*o, which `on` and `o n` equal, and `blue` as b*l*u*e
    (`bleu`). The answer is the last `\\boxed{}` when there is one, else the response's last word."""
    if not _WORDS.fullmatch(gold.strip()) or gold.strip().lower() in _MATH_WORDS:
        return None
    said = last_boxed(prediction)
    if said is None:
        words = re.findall(r"[A-Za-z]+", prediction)
        said = words[-1] if words else ""

    def plain(text: str) -> str:
        return " ".join(re.findall(r"[a-z]+", text.lower()))

    return plain(said) == plain(gold)


def math_equal(prediction: str, gold: str) -> bool:
    """True iff `prediction` (free text, LaTeX, `\\boxed{}`) states the same answer as `gold`.

    A single-letter gold (a multiple-choice option) is compared as a letter, a gold of words as words
    (`_word_answer`); everything else with math-verify's symbolic and numeric equivalence.
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

    try:
        words = _word_answer(prediction, gold)
        if words is not None:
            return words
        letter = _LETTER.match(gold.strip())
        if letter:
            chosen = choice_letter(prediction)
            if chosen is not None:
                return chosen == letter.group(1)
            configs = [StringExtractionConfig(), LatexExtractionConfig(), ExprExtractionConfig()]
            gold_parsed = parse(letter.group(1), [StringExtractionConfig()], parsing_timeout=None)
            pred_parsed = parse(prediction, configs, parsing_timeout=None)
        else:
            gold_parsed = _parse_gold(gold)
            pred_parsed = parse(prediction, parsing_timeout=None)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except Exception:
        return False


# ----------------------------------------------------------------------------- in worker processes


class VerifierPool(SandboxPool):
    """`math_equal` in sandboxed worker processes: sympy can hang on pathological LaTeX inside C code
    where no signal reaches it, so the only safe timeout is to kill the worker."""

    def map(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Verify each (prediction, gold); an item past the timeout is False."""
        return [
            bool(r) for r in self.call("prcli.verify:math_equal", [list(p) for p in pairs], default=False)
        ]


class AsyncVerifier:
    """`await verify(prediction, gold)` from many coroutines; calls are batched onto a VerifierPool."""

    def __init__(self, pool: VerifierPool, max_batch: int = 256):
        from prcli.concurrency import MicroBatcher

        self.pool = pool
        self._batcher = MicroBatcher(pool.map, max_batch)

    async def verify(self, prediction: str, gold: str) -> bool:
        return await self._batcher.submit((prediction, gold))


_shared: VerifierPool | None = None
_shared_lock = threading.Lock()


def shared_pool(timeout: float = 5.0) -> VerifierPool:
    """The process-wide pool (created on first use, closed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = VerifierPool(timeout=timeout)
            atexit.register(_shared.close)
        _shared.timeout = timeout
        return _shared
