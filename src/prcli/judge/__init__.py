"""The visual perception judge (method.md section 2.6), its prompt, parser and backends."""

from prcli.judge.core import (
    HFJudge,
    Judge,
    JudgeConfig,
    JudgeItem,
    JudgeStats,
    LexicalJudge,
    LLMJudge,
    OpenAIJudge,
    build_judge,
)
from prcli.judge.prompt import PROMPT_VERSION, build_messages, format_annotations, parse_verdicts
from prcli.judge.statements import lexical_verdicts

__all__ = [
    "PROMPT_VERSION",
    "HFJudge",
    "Judge",
    "JudgeConfig",
    "JudgeItem",
    "JudgeStats",
    "LLMJudge",
    "LexicalJudge",
    "OpenAIJudge",
    "build_judge",
    "build_messages",
    "format_annotations",
    "lexical_verdicts",
    "parse_verdicts",
]
