"""`pr eval`: generate (or read saved responses), decide each item by a scoring protocol, aggregate.

One straight line per chunk of items: generate -> decide (extract, judge, score: `protocols`) ->
write. Outputs in the folder `out`: `items.jsonl` (one scored item per line, appended and
resumable), `summary.json` (overall accuracy, breakdowns, special aggregates, the protocol and how
it was produced), `config.yaml`, and `failed.jsonl` for items whose generation or LLM step failed
(retried by the next run).

Beside it: `config` (`EvalConfig`), `predictions` (saved responses by id, ours or another tool's),
`several` (several benchmarks in one call, one model loaded).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prcli.cache import ResultCache
from prcli.config import save_config
from prcli.errors import StageError
from prcli.eval import get_benchmark
from prcli.eval.base import Benchmark, Sample
from prcli.eval.config import RESULT_KEYS, EvalConfig
from prcli.eval.formats import (
    write_lmms_eval,
)
from prcli.eval.predictions import Predictions, find_response, open_predictions
from prcli.eval.protocols import CallFailed, Protocol, build_protocol
from prcli.jsonl import (
    InputError,
    LineProblem,
    ResumableJsonl,
    content_hash,
    write_failed,
    write_json_atomic,
)
from prcli.llm import LLMClient
from prcli.model_card import add_eval_results, card_file
from prcli.models import check_model, resolve_model
from prcli.runs import settings_hash
from prcli.trackers import tracked

log = logging.getLogger("prcli.eval")


@dataclass
class EvalSummary:
    out: Path
    summary: dict[str, Any]
    written: int
    already_done: int
    redone: int
    failed: int
    missing_predictions: int
    seconds: float
    first_error: str | None = None  # why the first failed item failed


def _native_ids_unique(cfg: EvalConfig, bench: Benchmark) -> bool:
    """Whether a native id names one item: not when the data holds both MMMU-Pro settings, where one
    file keyed by native ids would answer both settings' items with the same responses."""
    seen: set[str] = set()
    for sample in benchmark_samples(cfg, bench, decode_images=False):
        native = sample.fields.get("native_id")
        if native is not None:
            if native in seen:
                return False
            seen.add(native)
    return True


# ----------------------------------------------------------------------------- items


def _item(sample: Sample, response: str, scored: dict[str, Any]) -> dict[str, Any]:
    item = {
        "id": sample.id,
        "correct": bool(scored["correct"]),
        "response": response,
        "extracted": scored.get("extracted"),
        "prediction": scored.get("prediction"),
        "answer": sample.answer,
        "method": scored.get("method"),
        **sample.fields,
    }
    if "judge_raw" in scored:  # what the LLM said, for an audit of its verdict
        item["judge_raw"] = scored["judge_raw"]
    return item


def _missing_item(sample: Sample) -> dict[str, Any]:
    """A benchmark item with no saved prediction: wrong, as the official scorers count it."""
    return {**_item(sample, "", {"correct": False, "method": "missing"}), "missing": True}


def _light_items(path: Path) -> Iterator[dict[str, Any]]:
    """Items without their long texts, for aggregation."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            item = json.loads(line)
            for key in ("response", "extracted", "prediction", "judge_raw"):
                item.pop(key, None)
            yield item


def _input_hash(settings: str, sample: Sample, response: str | None) -> str:
    """What an item's result depends on: the settings (the protocol's model and prompts among them),
    the benchmark row and (when scoring saved predictions) the response. Images are identified by
    the row, not by their bytes."""
    return content_hash(
        settings, sample.id, sample.question, sample.answer, sample.choices, sample.fields, response
    )


# ----------------------------------------------------------------------------- the run


@dataclass
class _Todo:
    """An item still to decide: its saved response (None: to be generated) and its input hash."""

    sample: Sample
    response: str | None
    input_hash: str


@dataclass
class _Tally:
    missing: int = 0  # benchmark items without a saved prediction (written as wrong)


def benchmark_samples(cfg: EvalConfig, bench: Benchmark, *, decode_images: bool) -> Iterator[Sample]:
    loaded = bench.load(cfg.data, decode_images=decode_images)
    return itertools.islice(loaded, cfg.limit) if cfg.limit else loaded


def scorer_version(bench: Benchmark) -> str:
    """A hash of the code that turns a response into a verdict (the benchmark's module, the shared
    extractor, base class and protocols): results scored by other scoring code are redone on resume,
    not reused, so a fixed scorer never leaves old verdicts behind."""
    import importlib
    import inspect

    names = (type(bench).__module__, "prcli.eval.extract", "prcli.eval.base", "prcli.eval.protocols")
    return content_hash(*(inspect.getsource(importlib.import_module(n)) for n in names))


def images_in_prompt(sample: Sample) -> int:
    """Images one item puts in its prompt (empty image slots, as MMMU's unused `image_k`, do not count)."""
    return sum(1 for image in sample.images if image is not None)


def _count_items(cfg: EvalConfig, bench: Benchmark, index: Predictions | None) -> tuple[int, int]:
    """(items, the most images one item has). Reads every benchmark row (without decoding images; a
    bad row stops the run here, before any output) and checks that the predictions answer at least
    one item. The image count sizes vLLM's per-prompt limit for the whole benchmark, not the first
    batch (a later item with more images would otherwise fail)."""
    total, most_images, matched = 0, 0, index is None
    by_native_id = index is not None and _native_ids_unique(cfg, bench)
    for sample in benchmark_samples(cfg, bench, decode_images=False):
        total += 1
        most_images = max(most_images, images_in_prompt(sample))
        matched = matched or find_response(index, sample, by_native_id) is not None  # one match is enough
    if index is not None and total and not matched:
        raise InputError(
            [
                LineProblem(
                    cfg.predictions or cfg.out,
                    0,
                    f"no prediction id matches a {bench.name} item id (the first items are "
                    + ", ".join(
                        repr(s.id)
                        for s in itertools.islice(benchmark_samples(cfg, bench, decode_images=False), 3)
                    )
                    + f"): is this the right file for --bench {bench.name}?",
                )
            ]
        )
    return total, most_images


def _todo(
    cfg: EvalConfig,
    bench: Benchmark,
    index: Predictions | None,
    settings: str,
    items_out: ResumableJsonl,
    tally: _Tally,
    on_item: Callable[[int], None] | None,
) -> Iterator[_Todo]:
    """The items to decide, in benchmark order. Items done by an earlier run with the same inputs
    are kept; a benchmark item without a saved prediction is written as wrong."""
    by_native_id = index is not None and _native_ids_unique(cfg, bench)
    for sample in benchmark_samples(cfg, bench, decode_images=index is None):
        response = find_response(index, sample, by_native_id) if index is not None else None
        h = _input_hash(settings, sample, response)
        reused = items_out.reuse(sample.id, h)
        missing = index is not None and response is None
        tally.missing += missing
        if missing and not reused:
            items_out.write(_missing_item(sample), h)
        if reused or missing:
            if on_item:
                on_item(1)
            continue
        yield _Todo(sample, response, h)


def _chunk_size(cfg: EvalConfig) -> int:
    if cfg.predictions is not None:
        return 256
    return cfg.batch_size if cfg.backend != "openai" else 4 * cfg.concurrency


def _protocol(cfg: EvalConfig, bench: Benchmark) -> Protocol:
    def cache() -> ResultCache | None:
        if not cfg.cache:
            return None
        return ResultCache(cfg.cache_dir / "results.sqlite" if cfg.cache_dir else None)

    return build_protocol(
        cfg.protocol,
        bench,
        score_timeout=cfg.score_timeout,
        endpoint=cfg.answer_judge_endpoint,
        cache=cache,
        extract_prompt=cfg.extract_prompt,
    )


@tracked("eval")
def run_eval(
    cfg: EvalConfig,
    *,
    on_start: Callable[[int | None], None] | None = None,
    on_item: Callable[[int], None] | None = None,
    make_generator: Callable[[EvalConfig, int], Any] | None = None,
) -> EvalSummary:
    """Chunks of items -> generate (or read the saved responses) -> decide (the protocol extracts,
    judges and scores) -> write. Everything is checked before anything is written.

    `make_generator(cfg, max_images)` gives the model (default: load it); `run_evals` passes one that
    keeps the model loaded across benchmarks."""
    started = time.monotonic()
    bench = get_benchmark(cfg.bench)
    if cfg.model_card is not None:  # before any work: the card to write into, a benchmark it can name
        card_file(cfg.model_card)
        if not bench.hub.repo:
            raise StageError(f"--model-card: {bench.name} is not a published benchmark the Hub could show")
    if cfg.decoding_preset == "official":  # from here on, the settings this run really uses
        cfg = cfg.model_copy(update=bench.official_decoding)
    out = cfg.out
    index = open_predictions(cfg, cfg.predictions, bench, out / "rejected.jsonl") if cfg.predictions else None
    total, most_images = _count_items(cfg, bench, index)
    if cfg.model_card is not None and total < (bench.hub.items or 0):  # plainly a subset: before any work
        raise StageError(_not_whole(bench, total))
    if index is None and cfg.backend != "openai":  # a model that cannot load fails before any file is written
        check_model(cfg.model or "")
    protocol = _protocol(cfg, bench)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    settings = settings_hash(cfg, RESULT_KEYS, protocol=protocol.fingerprint(), scorer=scorer_version(bench))
    tally, failed, generator = _Tally(), [], None
    try:
        with ResumableJsonl(out / "items.jsonl", overwrite=cfg.overwrite) as items_out:
            if on_start:
                on_start(total)
            todo = _todo(cfg, bench, index, settings, items_out, tally, on_item)
            while chunk := list(itertools.islice(todo, _chunk_size(cfg))):
                samples = [t.sample for t in chunk]
                if index is not None:
                    responses: list[str | Exception] = [t.response or "" for t in chunk]
                else:
                    generator = generator or (make_generator or load_generator)(cfg, most_images)
                    responses = generator.generate(bench, samples, cfg.prompt_style)
                failed += [
                    {"id": t.sample.id, "error": f"generation: {r}"}
                    for t, r in zip(chunk, responses, strict=True)
                    if not isinstance(r, str)
                ]
                generated = [(t, r) for t, r in zip(chunk, responses, strict=True) if isinstance(r, str)]
                outcomes = protocol.decide([t.sample for t, _ in generated], [r for _, r in generated])
                for (t, response), outcome in zip(generated, outcomes, strict=True):
                    if isinstance(outcome, CallFailed):
                        failed.append({"id": t.sample.id, "error": str(outcome)})
                    else:
                        items_out.write(_item(t.sample, response, outcome), t.input_hash)
                if on_item:
                    on_item(len(chunk))
            items_out.finish(lambda: (s.id for s in benchmark_samples(cfg, bench, decode_images=False)))
            written, reused, redone = items_out.written, items_out.reused, items_out.redone
    finally:
        protocol.close()
    write_failed(out / "failed.jsonl", failed)
    summary = _summary(cfg, bench, protocol, total, tally, reused, redone, failed)
    summary["predictions_read"] = index.describe() if index is not None else None
    write_json_atomic(out / "summary.json", summary)
    if cfg.log_samples == "lmms-eval":
        samples = benchmark_samples(cfg, bench, decode_images=False)
        write_lmms_eval(out, bench, samples, out / "items.jsonl", summary, cfg.model)
    if cfg.model_card is not None and not failed:
        if summary["n"] != bench.hub.items:  # the items the headline counts (MathVerse's Text Only is not)
            raise StageError(
                _not_whole(bench, summary["n"]) + f"; the scores are in {out}, the card is unchanged"
            )
        add_eval_results(cfg.model_card, [card_result(bench, summary)])
    elif cfg.model_card is not None:
        log.warning("--model-card: %s left as it was: %d item(s) failed", cfg.model_card, len(failed))
    return EvalSummary(
        out,
        summary,
        written,
        reused,
        redone,
        len(failed),
        tally.missing,
        time.monotonic() - started,
        failed[0]["error"] if failed else None,
    )


def _summary(
    cfg: EvalConfig,
    bench: Benchmark,
    protocol: Protocol,
    total: int,
    tally: _Tally,
    reused: int,
    redone: int,
    failed: list[dict[str, Any]],
) -> dict[str, Any]:
    items = cfg.out / "items.jsonl"
    summary = bench.aggregate(_light_items(items))
    summary.update(
        {
            "title": bench.title,
            **protocol.describe(),
            "model": cfg.model,
            "predictions": str(cfg.predictions) if cfg.predictions else None,
            "data": str(cfg.data) if cfg.data else f"hub:{bench.hub.repo}",
            "subset": f"the first {total} items (--limit {cfg.limit})" if cfg.limit else None,
            "backend": None if cfg.predictions else cfg.backend,
            "prompt_style": None if cfg.predictions else cfg.prompt_style,
            "decoding": None if cfg.predictions else cfg.decoding,
            "methods": dict(Counter(item.get("method") for item in _light_items(items))),
            "items_in_benchmark": total,
            "missing_predictions": tally.missing,
            "reused": reused,
            "redone": redone,
            "failed": len(failed),
            "complete": not failed,  # False: the failed items are in no denominator (failed.jsonl)
            "scored_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    return summary


def _not_whole(bench: Benchmark, n: int) -> str:
    return (
        f"--model-card: the card would name {bench.title} {bench.hub.split} ({bench.hub.items} items), but "
        f"this copy of it has {n}: a score of another set of items is not published under its name"
    )


def card_result(bench: Benchmark, summary: dict[str, Any]) -> dict[str, Any]:
    """One benchmark's entry of a model card's model-index: its headline metric (We-Math's strict score,
    MMMU-Pro's mean of the two settings, else accuracy), by name."""
    return {
        "hub_id": bench.hub.repo,
        "title": bench.title,
        "split": bench.hub.split,
        "metric": summary.get("headline", "accuracy"),
        "value": summary["accuracy"],
        "protocol": summary["protocol"],
    }


def load_generator(cfg: EvalConfig, max_images: int) -> Any:
    from prcli.eval import generate

    model = resolve_model(cfg.model or "")
    if cfg.backend == "hf":
        return generate.HFGenerator(
            model,
            device=cfg.device,
            batch_size=cfg.batch_size,
            decoding=cfg.decoding,
            pixels=(cfg.min_pixels, cfg.max_pixels),
        )
    if cfg.backend == "openai":
        client = LLMClient(cfg.generation_endpoint())
        return generate.OpenAIGenerator(client, cfg.decoding)
    try:
        return generate.VLLMGenerator(
            model,
            decoding=cfg.decoding,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
            max_images=max_images,
        )
    except RuntimeError as exc:
        raise StageError(str(exc)) from None
