"""`pr eval`: generate (or read saved responses), decide each item by a scoring protocol, aggregate.

One straight line per chunk of items: generate -> decide (extract, judge, score: `protocols`) ->
write. Outputs in the folder `out`: `items.jsonl` (one scored item per line, appended and
resumable), `summary.json` (overall accuracy, breakdowns, special aggregates, the protocol and how
it was produced), `config.yaml`, and `failed.jsonl` for items whose generation or LLM step failed
(retried by the next run).
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import logging
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from prcli.cache import ResultCache
from prcli.config import OVERWRITE_HELP, SKIP_INVALID_HELP, EnvVarName, ServerUrl, StageConfig, save_config
from prcli.errors import StageError
from prcli.eval import BENCHMARKS, get_benchmark
from prcli.eval.base import Benchmark, Sample
from prcli.eval.formats import (
    ExternalPredictions,
    PredictionsFormat,
    SamplesLog,
    detect_format,
    read_predictions,
    write_lmms_eval,
)
from prcli.eval.protocols import CallFailed, Protocol, ProtocolName, build_protocol
from prcli.jsonl import (
    InputError,
    LineProblem,
    ResumableJsonl,
    check_jsonl,
    content_hash,
    id_hash,
    iter_raw_lines,
    validation_problems,
    write_failed,
    write_json_atomic,
)
from prcli.llm import Endpoint, LLMClient
from prcli.model_card import add_eval_results, card_file
from prcli.models import check_model, resolve_model
from prcli.records import Prediction
from prcli.runs import settings_hash
from prcli.trackers import TrackerOptions, tracked

log = logging.getLogger("prcli.eval")

Backend = Literal["hf", "openai", "vllm"]
Style = Literal["official", "r1", "cot"]


class EvalConfig(StageConfig, TrackerOptions):
    bench: str = Field(
        description="Benchmark: "
        + ", ".join(f"{name} ({cls.title})" for name, cls in sorted(BENCHMARKS.items()))
        + "; or several, comma-separated, or all (the paper's eight): the model loads once and each "
        "benchmark gets OUT/<bench>/."
    )
    out: Path = Field(
        description="Output folder: items.jsonl, summary.json, config.yaml (one subfolder per benchmark "
        "when there are several)."
    )
    model: str | None = Field(
        None, description="Model to evaluate: alias, hub id, local path, or the server's model name."
    )
    data: Path | None = Field(
        None,
        description="Local copy of the benchmark (native dump or normalised JSONL); default: the hub. With "
        "several benchmarks, a folder holding each one's copy under its name (DATA/mathvista.parquet, "
        "DATA/mmmu_pro/, ...).",
    )
    predictions: Path | None = Field(
        None,
        description='Score saved responses instead of generating: JSONL of {"id", "response"} (or a JSON '
        "id->response map), lmms-eval's per-sample log or VLMEvalKit's prediction file (see "
        "--predictions-format). With several benchmarks, a folder of PREDICTIONS/<bench>.<ext>.",
    )
    predictions_format: PredictionsFormat = Field(
        "auto",
        description="Layout of --predictions: prcli, lmms-eval (a <date>_samples_<task>.jsonl of --log_samples: the "
        "raw resps, items by the doc's id or else by doc_id position, checked against each line's target) or "
        "vlmevalkit (<model>_<dataset>.xlsx/.tsv/.csv/.json: prediction by index, checked against each row's "
        "answer); auto: told by the file, an error where it cannot be.",
    )
    log_samples: SamplesLog = Field(
        "none",
        description="lmms-eval: also write the scored items in lmms-eval's per-sample log layout, "
        "OUT/lmms-eval/<model>/<date>_samples_<bench>.jsonl and <date>_results.json, to cross-check a score.",
    )
    backend: Backend = Field(
        "hf", description="Generation backend: hf (transformers, batched), openai (a server) or vllm (GPU)."
    )
    prompt_style: Style = Field(
        "official",
        description="official (the benchmark's own), r1 (Perception-R1's think/answer/boxed suffix) or cot.",
    )
    base_url: list[ServerUrl] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        description="openai backend: server URL, ending in /v1; repeat the option for several replicas.",
    )
    api_key_env: EnvVarName = Field(
        "OPENAI_API_KEY", description="openai backend: environment variable with the API key."
    )
    concurrency: int = Field(16, ge=1, description="openai backend: requests in flight at most.")
    timeout: float = Field(600.0, gt=0, description="openai backend: seconds per request attempt.")
    max_retries: int = Field(3, ge=0, description="openai backend: retries of a failed request.")
    batch_size: int = Field(8, ge=1, description="hf and vllm backends: prompts per generation batch.")
    max_new_tokens: int = Field(4096, ge=1, description="Longest response, in tokens (Perception-R1: 4096).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0: greedy, the default).")
    decoding_preset: Literal["default", "official"] = Field(
        "default",
        description="official: the benchmark's own runner's decoding where it has one (EMMA: temperature "
        "0.7), replacing --temperature/--max-new-tokens; default: the options as given (greedy).",
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling (only with temperature > 0).")
    seed: int = Field(0, description="Sampling seed.")
    min_pixels: int | None = Field(
        None, description="Smallest image area after resizing (default: the processor's)."
    )
    max_pixels: int | None = Field(
        None, description="Largest image area after resizing (default: the processor's)."
    )
    device: str = Field("auto", description="hf backend: torch device.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm backend: tensor parallel size.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm backend: GPU memory share.")
    max_model_len: int | None = Field(None, description="vllm backend: context length.")
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N items.")
    protocol: ProtocolName = Field(
        "rules",
        description="How responses are scored: rules (offline: rule extraction + each benchmark's official "
        "normaliser), official (each benchmark's published pipeline, the --answer-judge-* LLM standing in for "
        "its GPT model; rule-based benchmarks use their rules) or paper (Perception-R1's: the <answer> block, "
        "else LLM extraction, then an LLM true/false judgement of every item).",
    )
    extract_prompt: Path | None = Field(
        None,
        description="official/paper: file replacing the instruction and worked examples of the first LLM step "
        "(e.g. the exact published extraction prompt); the item's slot stays.",
    )
    answer_judge_endpoint: Endpoint = Field(
        default_factory=lambda: Endpoint(model="Qwen/Qwen2.5-72B-Instruct", concurrency=16, timeout=600.0),
        description="The LLM of the official and paper protocols (extraction and judgement); its --answer-judge-prompt "
        "file replaces the judgement's instruction and worked examples.",
        json_schema_extra={"unused": ("structured", "device")},  # free text, a server
    )
    cache: bool = Field(True, description="official/paper: reuse LLM answers from the persistent cache.")
    cache_dir: Path | None = Field(
        None, description="Cache folder (default: $PRCLI_CACHE_DIR or ~/.cache/prcli)."
    )
    score_timeout: float = Field(
        10.0, gt=0, description="Seconds per item for sympy-based scoring (timeout: wrong)."
    )
    skip_invalid: bool = Field(False, description=SKIP_INVALID_HELP)
    overwrite: bool = Field(False, description=OVERWRITE_HELP)
    model_card: Path | None = Field(
        None,
        description="Folder of a model trained by pr train / pr sft: its README.md model card gets the "
        "accuracy in its model-index (shown on the Hub), replacing an earlier result of the same benchmark "
        "and protocol. Whole benchmarks only, written once every item is scored.",
    )

    @model_validator(mode="after")
    def _needs_a_source(self) -> EvalConfig:
        if self.model is None and self.predictions is None:
            raise ValueError("give --model (to generate) or --predictions (to score saved responses)")
        if self.protocol == "rules" and (self.extract_prompt or self.answer_judge_endpoint.prompt):
            raise ValueError("--extract-prompt and --answer-judge-prompt need --protocol official or paper")
        if self.model_card is not None and self.limit:
            raise ValueError("--model-card takes a whole benchmark's accuracy, not that of --limit items")
        return self

    def generation_endpoint(self) -> Endpoint:
        """The server of the model under evaluation (openai backend)."""
        return Endpoint(
            base_url=self.base_url,
            model=self.model,
            api_key_env=self.api_key_env,
            concurrency=self.concurrency,
            timeout=self.timeout,
            max_retries=self.max_retries,
            structured="off",
        )

    @property
    def decoding(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }


# the settings that shape a result (the benchmark row and a saved response are hashed with each item,
# so moving the data or predictions file does not redo anything): a change redoes the items
RESULT_KEYS = (
    "bench",
    "model",
    "backend",
    "prompt_style",
    "max_new_tokens",
    "temperature",
    "top_p",
    "seed",
    "min_pixels",
    "max_pixels",
    "protocol",
)  # the protocol's model and prompt hashes join them (`Protocol.fingerprint`)


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


# ----------------------------------------------------------------------------- predictions


class PredictionIndex:
    """Saved responses by id without holding them in memory.

    For JSONL, only sorted arrays of 64-bit id hashes, byte offsets and line lengths are kept
    (24 bytes a line); a response is read from the file when it is needed.
    """

    def __init__(self, path: Path, skip_invalid: bool, rejected: Path):
        self.path = path
        self.json_map: dict[str, str] | None = None
        if path.suffix == ".json":  # {id: response} (e.g. MMMU's example outputs) or [{"id", "response"}]
            self.json_map = _json_predictions(path)
            return
        checked = check_jsonl(path, Prediction, skip_invalid=skip_invalid, rejected_path=rejected)
        bad = checked.rejected_lines
        hashes, offsets, lengths = array("q"), array("q"), array("q")
        pos = 0
        for lineno, raw in iter_raw_lines(path):
            length = len(raw or b"")
            if raw is not None and raw.strip() and lineno not in bad:
                hashes.append(id_hash(str(json.loads(raw)["id"])))
                offsets.append(pos)
                lengths.append(length)
            pos += length
        order = sorted(range(len(hashes)), key=hashes.__getitem__)
        self._hashes = array("q", (hashes[i] for i in order))
        self._offsets = array("q", (offsets[i] for i in order))
        self._lengths = array("q", (lengths[i] for i in order))

    def describe(self) -> dict[str, Any]:
        return {"format": "prcli", "ids": "id"}

    def get(self, item_id: str) -> str | None:
        if self.json_map is not None:
            return self.json_map.get(item_id)
        h = id_hash(item_id)
        i = bisect.bisect_left(self._hashes, h)
        with open(self.path, "rb") as fh:
            while i < len(self._hashes) and self._hashes[i] == h:
                fh.seek(self._offsets[i])
                row = json.loads(fh.read(self._lengths[i]))
                if str(row["id"]) == item_id:  # a hash collision is checked, not trusted
                    return row["response"]
                i += 1
        return None


def _json_predictions(path: Path) -> dict[str, str]:
    """A `.json` predictions file, checked as strictly as JSONL: every problem names its place."""

    def bad(message: str, where: str | None = None) -> InputError:
        return InputError([LineProblem(path, 0, message, where)])

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise bad(f"duplicate id {key!r}")
            seen[key] = value
        return seen

    try:
        obj = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=unique)
    except UnicodeDecodeError as exc:
        raise bad(f"not valid UTF-8 (byte offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            [LineProblem(path, exc.lineno, f"invalid JSON: {exc.msg} at column {exc.colno}")]
        ) from None
    if isinstance(obj, dict):  # id -> response text, or id -> record with a `response` (MathVista's outputs)
        out = {}
        for key, value in obj.items():
            if isinstance(value, dict) and isinstance(value.get("response"), str):
                value = value["response"]
            if not isinstance(value, str):
                raise bad(
                    f"the value of an id must be the response text (or an object with a text `response`), "
                    f"got {type(value).__name__}",
                    f"[{json.dumps(str(key))}]",
                )
            out[str(key)] = value
        return out
    if not isinstance(obj, list):
        raise bad(f"expected an id -> response object or a list of objects, got {type(obj).__name__}")
    out: dict[str, str] = {}
    for i, row in enumerate(obj):
        if not isinstance(row, dict):
            raise bad(f"expected an object with id and response, got {type(row).__name__}", f"[{i}]")
        try:
            pred = Prediction.model_validate(row)
        except ValidationError as exc:
            raise InputError(
                [
                    LineProblem(path, 0, p.message, f"[{i}].{p.field}")
                    for p in validation_problems(path, 0, exc)
                ]
            ) from None
        if pred.id in out:
            raise bad(f"duplicate id {pred.id!r}", f"[{i}].id")
        out[pred.id] = pred.response
    return out


Predictions = PredictionIndex | ExternalPredictions


def _open_predictions(cfg: EvalConfig, path: Path, bench: Benchmark, rejected: Path) -> Predictions:
    """Our JSONL/JSON by id, or another tool's file matched to the whole benchmark's items."""
    fmt = detect_format(path, cfg.predictions_format)
    if fmt == "prcli":
        return PredictionIndex(path, cfg.skip_invalid, rejected)
    if cfg.skip_invalid:
        raise StageError(
            f"--skip-invalid applies to prcli predictions, not to {fmt} files: fix or remove the rows"
        )
    return read_predictions(path, fmt, bench, bench.load(cfg.data, decode_images=False))


def _find_response(index: Predictions, sample: Sample, by_native_id: bool) -> str | None:
    """The saved response of `sample`: by its id, else (`by_native_id`) by its native id, as a
    single-setting MMMU-Pro file keys them."""
    response = index.get(sample.id)
    native = sample.fields.get("native_id")
    if response is None and native is not None and by_native_id:
        response = index.get(str(native))
    return response


def _native_ids_unique(cfg: EvalConfig, bench: Benchmark) -> bool:
    """Whether a native id names one item: not when the data holds both MMMU-Pro settings, where one
    file keyed by native ids would answer both settings' items with the same responses."""
    seen: set[str] = set()
    for sample in _samples(cfg, bench, decode_images=False):
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


def _samples(cfg: EvalConfig, bench: Benchmark, *, decode_images: bool) -> Iterator[Sample]:
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


def _images_in_prompt(sample: Sample) -> int:
    """Images one item puts in its prompt (empty image slots, as MMMU's unused `image_k`, do not count)."""
    return sum(1 for image in sample.images if image is not None)


def _count_items(cfg: EvalConfig, bench: Benchmark, index: Predictions | None) -> tuple[int, int]:
    """(items, the most images one item has). Reads every benchmark row (without decoding images; a
    bad row stops the run here, before any output) and checks that the predictions answer at least
    one item. The image count sizes vLLM's per-prompt limit for the whole benchmark, not the first
    batch (a later item with more images would otherwise fail)."""
    total, most_images, matched = 0, 0, index is None
    by_native_id = index is not None and _native_ids_unique(cfg, bench)
    for sample in _samples(cfg, bench, decode_images=False):
        total += 1
        most_images = max(most_images, _images_in_prompt(sample))
        matched = matched or _find_response(index, sample, by_native_id) is not None  # one match is enough
    if index is not None and total and not matched:
        raise InputError(
            [
                LineProblem(
                    cfg.predictions or cfg.out,
                    0,
                    f"no prediction id matches a {bench.name} item id (the first items are "
                    + ", ".join(
                        repr(s.id) for s in itertools.islice(_samples(cfg, bench, decode_images=False), 3)
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
    for sample in _samples(cfg, bench, decode_images=index is None):
        response = _find_response(index, sample, by_native_id) if index is not None else None
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
    index = (
        _open_predictions(cfg, cfg.predictions, bench, out / "rejected.jsonl") if cfg.predictions else None
    )
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
                    generator = generator or (make_generator or _generator)(cfg, most_images)
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
            items_out.finish(lambda: (s.id for s in _samples(cfg, bench, decode_images=False)))
            written, reused, redone = items_out.written, items_out.reused, items_out.redone
    finally:
        protocol.close()
    write_failed(out / "failed.jsonl", failed)
    summary = _summary(cfg, bench, protocol, total, tally, reused, redone, failed)
    summary["predictions_read"] = index.describe() if index is not None else None
    write_json_atomic(out / "summary.json", summary)
    if cfg.log_samples == "lmms-eval":
        samples = _samples(cfg, bench, decode_images=False)
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


# ----------------------------------------------------------------------------- several benchmarks

# `-b all`: the paper's order (Table 1); a benchmark registered later follows, `local` never
PAPER_ORDER = ("mathvista", "mathverse", "mathvision", "wemath", "mmmu", "mmmu_pro", "mmstar", "emma")


def benchmark_names(spec: str) -> list[str]:
    """`-b`'s benchmarks, registry names in order: one name, a comma-separated list or `all`. An
    unknown name stops here, before anything loads."""
    if spec.strip().lower() == "all":
        return [n for n in PAPER_ORDER if n in BENCHMARKS] + sorted(
            set(BENCHMARKS) - set(PAPER_ORDER) - {"local"}
        )
    names = [get_benchmark(n.strip()).name for n in spec.split(",") if n.strip()]
    if not names:
        raise StageError("--bench is empty: give a benchmark, a comma-separated list or all")
    return list(dict.fromkeys(names))


def per_benchmark(cfg: EvalConfig) -> list[EvalConfig]:
    """One config per benchmark of `-b`. A single benchmark keeps OUT, --data and --predictions as
    given; with several, each writes OUT/<bench>/ and finds its data and predictions under its name
    in the --data and --predictions folders. Every path is resolved before anything loads."""
    names = benchmark_names(cfg.bench)
    if len(names) == 1:
        return [cfg.model_copy(update={"bench": names[0]})]
    return [
        cfg.model_copy(
            update={
                "bench": name,
                "out": cfg.out / name,
                "data": cfg.data and _entry(cfg.data, name, "--data"),
                "predictions": cfg.predictions and _entry(cfg.predictions, name, "--predictions"),
                "run_name": cfg.run_name and f"{cfg.run_name}-{name}",  # a tracker run per benchmark
            }
        )
        for name in names
    ]


def _entry(folder: Path, name: str, option: str) -> Path:
    """FOLDER/<name> or FOLDER/<name>.<ext>: the one entry of a per-benchmark folder for `name`."""
    if not folder.is_dir():
        raise StageError(
            f"{option} {folder}: with several benchmarks, {option} is a folder holding each benchmark's "
            f"file or folder under its name ({folder}/{name}.jsonl, ...); or run one benchmark per call"
        )
    found = sorted(p for p in folder.iterdir() if p.name.partition(".")[0] == name)
    if len(found) != 1:
        what = f"{len(found)} entries ({', '.join(p.name for p in found)})" if found else "no entry"
        raise StageError(f"{option} {folder}: {what} for {name}; expected one {name} or {name}.<ext>")
    return found[0]


@dataclass
class MultiEval:
    """Several benchmarks in one call: each one's result, and how often the model was loaded."""

    results: dict[str, EvalSummary]
    model_loads: int

    @property
    def failed(self) -> list[str]:
        """The benchmarks with failed items (retried by the next run)."""
        return [name for name, r in self.results.items() if r.failed]


class _SharedGenerator:
    """The model under evaluation, loaded once and handed to each benchmark's run, sized for the most
    images any of them puts in one prompt (vLLM fixes that limit when it loads). A benchmark with
    other decoding (EMMA under --decoding-preset official) loads it again: the backends fix their
    decoding when they load."""

    def __init__(self, max_images: int):
        self.max_images, self.loads = max_images, 0
        self._generator: Any = None
        self._decoding: dict[str, Any] | None = None

    def __call__(self, cfg: EvalConfig, max_images: int) -> Any:
        if self._generator is None or cfg.decoding != self._decoding:
            self._generator = None  # the previous model goes before the next one loads
            self._generator = _generator(cfg, max(max_images, self.max_images))
            self._decoding = cfg.decoding
            self.loads += 1
        return self._generator


def run_evals(
    configs: list[EvalConfig],
    under: Callable[[str, Callable[..., EvalSummary]], EvalSummary] = lambda _label, run: run(None, None),
) -> MultiEval:
    """`run_eval` for each config (from `per_benchmark`), one model for all of them.

    Every benchmark's rows are read first (no image decoding), so missing or bad data stops the call
    before the model loads; items that fail (generation, LLM calls) in one benchmark do not stop the
    others. `under(label, run)` runs each `run(on_start, on_item)`, e.g. under a progress bar.
    """
    max_images = max(
        (
            _images_in_prompt(s)
            for c in configs
            for s in _samples(c, get_benchmark(c.bench), decode_images=False)
        ),
        default=1,
    )
    shared = _SharedGenerator(max_images)
    results = {
        c.bench: under(
            c.bench,
            lambda on_start, on_item, c=c: run_eval(
                c, on_start=on_start, on_item=on_item, make_generator=shared
            ),
        )
        for c in configs
    }
    return MultiEval(results, shared.loads)


def _generator(cfg: EvalConfig, max_images: int) -> Any:
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
