"""The four rewards of a rollout batch, computed once and served to TRL as four reward functions."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prcli.errors import StageError
from prcli.judge.core import Judge, JudgeItem
from prcli.llm import LLMClient
from prcli.rewards import REWARD_NAMES, answer_content, format_reward, repetition_penalty
from prcli.train.processes import main_process, sum_over_processes
from prcli.verify import VerifierPool


def completion_text(completion: Any) -> str:
    """TRL passes conversational completions as `[{"role": "assistant", "content": ...}]`."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


@dataclass
class _Batch:
    completions: list[Any]  # the batch itself: identity, not id(), which Python reuses once freed
    task: asyncio.Future[dict[str, list[float | None]]]
    served: set[str] = field(default_factory=set)  # the reward functions that have asked for it


def neutral_failures(group_ids: list[str], judgements: list[Any]) -> list[float | None]:
    """Perception rewards in which failed judgements (policy `skip`) do not move the advantages.

    TRL adds the weighted rewards with nansum, so a None would count as 0 and penalise that rollout
    against its group. A failed rollout gets instead the mean score of its group's judged rollouts
    (no advantage from perception); a group without any judged rollout stays None for all, which
    shifts every member equally and so changes nothing either.
    """
    scores: list[float | None] = [j.score for j in judgements]
    by_group: dict[str, list[float]] = {}
    for gid, score in zip(group_ids, scores, strict=True):
        if score is not None:
            by_group.setdefault(gid, []).append(score)
    for i, (gid, j) in enumerate(zip(group_ids, judgements, strict=True)):
        if j.score is None and j.error is not None and by_group.get(gid):
            scores[i] = sum(by_group[gid]) / len(by_group[gid])
    return scores


def check_first_step(judgements: list[Any]) -> None:
    """Stop the run when every judgement of its first step failed (wrong key, dead server, ...).

    Such a run would otherwise train for hours without the perception reward and exit 0. Raised
    before the first optimizer update; under DDP every process sees the same (summed) counts, so
    all stop together instead of some waiting forever in the next collective.
    """
    judged = [j for j in judgements if j.verdicts or j.error is not None]  # items with annotations
    failed = [j for j in judged if j.error is not None]
    n_judged, n_failed = sum_over_processes(len(judged), len(failed))
    if n_judged and n_failed == n_judged:
        error = failed[0].error if failed else "failed on another process"
        raise StageError(
            f"judge: every judgement of the first step failed: {error} ({n_failed} of {n_judged}); "
            "nothing was trained"
        )


class BatchRewards:
    """The four rewards of Perception-R1, computed once per rollout batch and served to TRL one by one.

    TRL weights and logs each reward function on its own, so the four rewards are four functions;
    computing them costs one judge call and one verification per rollout, so they share the work.
    The contract with TRL (`GRPOTrainer._calculate_rewards`, checked against the installed TRL by
    tests/test_train.py): for each batch it calls every reward function once, all with the SAME
    `completions` list object. The first call starts the computation (accuracy in the verifier
    processes, the judge concurrently over HTTP), the others await it. A broken contract would give
    wrong rewards silently (a reused list: stale rewards; a copy per function: four judge calls), so
    it is checked on every call and a violation stops the run.
    """

    def __init__(
        self,
        judge: Judge,
        *,
        pool: VerifierPool,
        ngram_size: int = 20,
        ngram_max_penalty: float = -2.0,
        samples_path: Path | None = None,
        sample_every: int = 10,
        samples_per_step: int = 8,
    ):
        self.judge = judge
        self.pool = pool
        self.ngram_size = ngram_size
        self.ngram_max_penalty = ngram_max_penalty
        self.samples_path = samples_path
        self.sample_every = sample_every
        self.samples_per_step = samples_per_step
        self._batch: _Batch | None = None
        self.batches = 0  # computations started: one per rollout batch
        self.failures_total = 0
        self.last_error: str | None = None  # this process's latest failed judgement (keys redacted)
        self._outage_counts = (0, 0)  # (failed, judged) of the batches since the last `take_outage_counts`
        self._first_step_checked = False
        self._judge_seconds = 0.0

    def functions(self) -> list[Any]:
        """Async reward functions named as in `REWARD_NAMES` (TRL logs `rewards/<name>/mean`)."""

        def make(name: str) -> Any:
            async def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
                values = await self._values(name, prompts, completions, kwargs)
                return values[name]

            reward.__name__ = name
            reward.__qualname__ = name
            return reward

        return [make(name) for name in REWARD_NAMES]

    async def _values(
        self, name: str, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        batch = self._batch
        if batch is None or batch.completions is not completions:
            if batch is not None and batch.served != set(REWARD_NAMES):
                self._broken(
                    f"a new batch arrived after only {sorted(batch.served)} of the last one were asked for"
                )
            batch = self._batch = _Batch(
                completions, asyncio.ensure_future(self._compute(prompts, completions, kwargs))
            )
            self.batches += 1
        elif name in batch.served:
            self._broken(
                f"reward {name!r} was asked twice for one completions list (a list reused for a new batch?)"
            )
        batch.served.add(name)
        return await batch.task

    @staticmethod
    def _broken(what: str) -> None:
        import trl

        raise StageError(
            f"reward sharing: {what}; TRL {trl.__version__} no longer calls each reward function once per "
            "batch with one completions list, which prcli's BatchRewards relies on"
        )

    async def _compute(
        self, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        texts = [completion_text(c) for c in completions]
        answers = kwargs["answer"]
        annotations = kwargs.get("annotations") or [[] for _ in texts]
        ids = kwargs.get("id") or [str(i) for i in range(len(texts))]
        failures_before = self.judge.stats.failures
        hits_before = self.judge.stats.cache_hits
        timeouts_before = self.pool.stats.timeouts
        pairs = [(answer_content(t), a) for t, a in zip(texts, answers, strict=True)]
        accuracy_task = asyncio.to_thread(self.pool.map, pairs)
        judge_items = [
            JudgeItem(f"{pid}#{i}", list(anns or []), t)
            for i, (pid, anns, t) in enumerate(zip(ids, annotations, texts, strict=True))
        ]
        judge_started = time.monotonic()

        async def judged() -> list[Any]:
            found = await self.judge.judge_many(judge_items)
            self._judge_seconds = time.monotonic() - judge_started
            return found

        verdicts, judgements = await asyncio.gather(accuracy_task, judged())
        if not self._first_step_checked:
            self._first_step_checked = True
            check_first_step(judgements)
        values: dict[str, list[float | None]] = {
            "accuracy": [1.0 if v else 0.0 for v in verdicts],
            "format": [format_reward(t) for t in texts],
            "perception": neutral_failures(ids, judgements),
            "repetition": [repetition_penalty(t, self.ngram_size, self.ngram_max_penalty) for t in texts],
        }
        errors = [j.error for j in judgements if j.error is not None]
        if errors:
            self.last_error = errors[-1]
        # counts of the whole step, summed over the processes (each judges its own share)
        failures, rollouts, hits, timeouts, judged = sum_over_processes(
            self.judge.stats.failures - failures_before,
            len(texts),
            self.judge.stats.cache_hits - hits_before,
            self.pool.stats.timeouts - timeouts_before,
            sum(1 for j in judgements if j.verdicts or j.error is not None),  # rollouts with annotations
        )
        self.failures_total += failures
        failed_before, judged_before = self._outage_counts
        self._outage_counts = (failed_before + failures, judged_before + judged)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            log_metric("judge/failures", float(failures))
            log_metric("judge/failure_rate", failures / max(1, rollouts))
            log_metric("judge/cache_hits", float(hits))
            log_metric("judge/seconds", self._judge_seconds)  # the batch's judging, beside verification
            log_metric("verifier/timeouts", float(timeouts))
            client = getattr(self.judge, "client", None)
            if isinstance(client, LLMClient):  # per judge URL, as this process sees it (cumulative)
                for name, value in client.stats.endpoint_metrics("judge").items():
                    log_metric(name, float(value))
        state = kwargs.get("trainer_state")
        step = int(getattr(state, "global_step", 0) or 0)
        if self.samples_path is not None and self.samples_per_step and step % self.sample_every == 0:
            self._write_samples(step, ids, prompts, texts, answers, judgements, values)
        return values

    def take_outage_counts(self) -> tuple[int, int]:
        """(failed, judged) judgements of all processes since the last call; the outage guard's input."""
        counts, self._outage_counts = self._outage_counts, (0, 0)
        return counts

    def _write_samples(
        self,
        step: int,
        ids: list[str],
        prompts: list[Any],
        texts: list[str],
        answers: list[str],
        judgements: list[Any],
        values: dict[str, list[float | None]],
    ) -> None:
        if not main_process() or self.samples_path is None:
            return
        with open(self.samples_path, "a", encoding="utf-8") as fh:
            for i in range(min(self.samples_per_step, len(texts))):
                prompt = prompts[i][-1]["content"] if isinstance(prompts[i], list) else prompts[i]
                if isinstance(prompt, list):
                    prompt = "".join(p.get("text") or "<image>" for p in prompt if isinstance(p, dict))
                row = {
                    "step": step,
                    "id": ids[i],
                    "prompt": prompt,
                    "completion": texts[i],
                    "answer": answers[i],
                    "verdicts": judgements[i].verdicts,
                    "judge_prompt_sha256": judgements[i].prompt_sha256,
                    **{f"reward_{k}": v[i] for k, v in values.items()},
                }
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
