"""Checkpoint folders: which one a `--resume` can continue from, and the logs to trim back to it."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from prcli.errors import StageError
from prcli.jsonl import write_jsonl_atomic
from prcli.train.processes import main_process

log = logging.getLogger("prcli.train")


_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
# What a run leaves in its folder (logs, config, checkpoints, the final model and processor, TRL's
# model card, TensorBoard logs): a fresh run beside them would mix its logs into theirs, and stale
# weight shards beside new ones would be read as one model.
_RUN_FILES = ("metrics.jsonl", "completions.jsonl", "config.yaml")
_RUN_OUTPUTS = (
    *_RUN_FILES,
    "checkpoint-*",
    "adapter",
    "runs",
    "README.md",
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    "*.bin.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.*",
    "*preprocessor_config.json",
    "processor_config.json",
)


def check_fresh_start(out: Path, resume: bool, overwrite: bool, inputs: tuple[Path | None, ...] = ()) -> None:
    """A new run starts in a folder without an earlier run: `--resume` continues that run, `--overwrite`
    replaces it (`clear_earlier_run`, once every input has loaded); otherwise it is an error (a fresh
    run used to append its metrics to the old run's and leave the old checkpoints beside its own)."""
    if resume and overwrite:
        raise StageError("--resume continues the earlier run and --overwrite removes it: choose one")
    if resume or not out.is_dir():
        return
    earlier = [p.name for p in out.iterdir() if p.name in _RUN_FILES or _CHECKPOINT.fullmatch(p.name)]
    if not earlier:
        return
    if not overwrite:
        raise StageError(
            f"{out} holds an earlier run ({', '.join(sorted(earlier)[:4])}): --resume to continue it, "
            "--overwrite to replace it, or another output folder"
        )
    inside = [p for p in inputs if p is not None and p.resolve().is_relative_to(out.resolve())]
    if inside:
        raise StageError(
            f"--overwrite would remove {inside[0]}, an input of this run, with the earlier run in {out}"
        )


def clear_earlier_run(out: Path, accelerator: Any) -> None:
    """`--overwrite`: the main process removes what an earlier run wrote in `out` (`_RUN_OUTPUTS`;
    anything else stays), then every process waits for it. Called once every input has loaded, so a
    failed start keeps the earlier run."""
    if main_process() and out.is_dir():
        removed = []
        for pattern in _RUN_OUTPUTS:
            for path in sorted(out.glob(pattern)):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path.name)
        if removed:
            log.warning("--overwrite: removed the earlier run's %s from %s", ", ".join(removed[:6]), out)
    accelerator.wait_for_everyone()


_FULL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


_WEIGHTS = (*_FULL_WEIGHTS, "adapter_model.safetensors", "adapter_model.bin")


def checkpoint_step(folder: Path) -> int:
    match = _CHECKPOINT.fullmatch(folder.name)
    return int(match.group(1)) if match else -1


def has_full_weights(checkpoint: Path) -> bool:
    return (checkpoint / "config.json").is_file() and any((checkpoint / n).is_file() for n in _FULL_WEIGHTS)


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from, or None when it is complete.

    Complete, as transformers writes it: model weights (whole, sharded, LoRA adapter, FSDP or
    DeepSpeed), optimizer state, scheduler state and a readable trainer_state.json. transformers
    itself resumes silently with a fresh optimizer when the optimizer file is missing, and a kill
    during a save leaves a folder with only config.json, so this is checked before resuming.
    """
    names = {p.name for p in folder.iterdir()}
    dirs = {p.name for p in folder.iterdir() if p.is_dir()}
    deepspeed = "latest" in names  # DeepSpeed keeps weights, optimizer and scheduler in global_step*/
    missing = []
    if not deepspeed and not (
        names & set(_WEIGHTS) or any(n.startswith("pytorch_model_fsdp") for n in names)
    ):
        missing.append("model weights")
    if not deepspeed and not (
        names & {"optimizer.pt", "optimizer.bin"} or any(n.startswith("optimizer") for n in dirs)
    ):
        missing.append("optimizer state")
    if "scheduler.pt" not in names and not deepspeed:
        missing.append("scheduler state")
    if "trainer_state.json" not in names:
        missing.append("trainer_state.json")
    if missing:
        return "missing " + ", ".join(missing)
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "trainer_state.json is unreadable"
    if deepspeed:
        tag = (folder / "latest").read_text(encoding="utf-8").strip()
        return None if tag and (folder / tag).is_dir() else f"DeepSpeed state {tag or '(none)'} is missing"
    for name in sorted(names & {*_WEIGHTS, "optimizer.pt", "optimizer.bin", "scheduler.pt"}):
        problem = _file_problem(folder / name)
        if problem:
            return problem
    return None


def _file_problem(path: Path) -> str | None:
    """A truncated or empty state file (a save cut short); shards of an index are checked too."""
    if path.stat().st_size == 0:
        return f"{path.name} is empty"
    if path.name.endswith(".index.json"):
        try:
            shards = set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError):
            return f"{path.name} is unreadable"
        for shard in sorted(shards):
            if not (path.parent / shard).is_file():
                return f"weight shard {shard} is missing"
            problem = _file_problem(path.parent / shard)
            if problem:
                return problem
    elif path.suffix == ".safetensors" and not _safetensors_whole(path):
        return f"{path.name} is truncated"
    return None


def _safetensors_whole(path: Path) -> bool:
    """The safetensors header is readable and the file is as long as the header says."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return False
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return False
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            return False
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    return 8 + n + max(ends, default=0) <= size


def resume_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint in `out`; newer incomplete ones are skipped with a warning.

    No checkpoint at all: start from the beginning (so `--resume` can be passed on every launch).
    Checkpoints but none complete: an error, since starting over would silently discard the run.
    """
    found = sorted(
        (p for p in out.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0),
        key=checkpoint_step,
        reverse=True,
    )
    if not found:
        if main_process():
            log.warning("--resume: no checkpoint in %s, starting from the beginning", out)
        return None
    skipped = []
    for folder in found:
        problem = checkpoint_problem(folder)
        if problem is None:
            if main_process():
                for name, why in skipped:
                    log.warning("--resume: skipping incomplete %s (%s)", name, why)
                log.warning("--resume: resuming from %s", folder)
            return folder
        skipped.append((folder.name, problem))
    listed = "; ".join(f"{name}: {why}" for name, why in skipped)
    raise StageError(
        f"--resume: no complete checkpoint in {out} ({listed}); "
        "remove the incomplete checkpoint folders to start from the beginning"
    )


def trim_logs(out: Path, step: int) -> None:
    """Drop the log lines of steps after `step` (they are redone) and any line cut short by a kill."""
    for name, keep in (("metrics.jsonl", lambda s: s <= step), ("completions.jsonl", lambda s: s < step)):
        path = out / name
        if not path.exists():
            continue
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and keep(int(row.get("step", 0))):
                rows.append(row)
        write_jsonl_atomic(path, rows)


def prompt_text_hash(template: str) -> str:
    """The hash of the policy's prompt text, recorded in config.yaml and checked on resume."""
    from prcli.jsonl import content_hash
    from prcli.prompts import render_template

    return content_hash(render_template(template, "{question}"))


def check_same_prompts(out: Path, current: dict[str, str | None]) -> None:
    """A resumed run goes on with the texts it started with: the policy's prompt and the judge's.

    `current` maps config.yaml keys (`prompt_text_hash`, `judge_prompt_sha256`, `judge_rules`) to this
    run's values.
    A changed template or judge prompt file would train the second half of the run on another
    signal with nothing to say so (config.yaml is rewritten on resume).
    """
    import yaml

    try:
        saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        saved = {}
    changed = [k for k, v in current.items() if k in saved and saved[k] != v]
    if changed:
        raise StageError(
            f"--resume: {', '.join(changed)} differ(s) from {out / 'config.yaml'}: the run would go on with "
            "another prompt text or judge rules than it started with; resume with the same --prompt-template "
            "and --judge-prompt file (and prcli version, for the lexical judge's rules), or train into a new "
            "output folder"
        )
    unknown = [k for k in current if k not in saved]
    if unknown and main_process():
        log.warning(
            "--resume: %s does not record %s; cannot check they are unchanged",
            out / "config.yaml",
            ", ".join(unknown),
        )
