"""The model card a trained model carries, its eval results on the Hub, and the push of the final model.

TRL's own card names the base model only when it is a hub id and the data not at all, so a model
trained from a local SFT checkpoint on a JSONL file is "a fine-tuned version of None". Ours follows
local checkpoints back to their hub base (through their own prcli card), and says what the data,
method, rewards and weights were, with the paper to cite and the prcli version. `pr eval
--model-card` adds scores to its `model-index`, which the Hub shows beside the model.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prcli.errors import StageError
from prcli.jsonl import write_text_atomic
from prcli.models import resolve_model

CITATION = """@article{xiao2025perceptionr1,
  title   = {Perception-R1: Advancing Multimodal Reasoning Capabilities of MLLMs via Visual Perception Reward},
  author  = {Xiao, Tong and others},
  journal = {arXiv preprint arXiv:2506.07218},
  year    = {2025}
}"""
PAPER = "https://arxiv.org/abs/2506.07218"
CARD = "README.md"


@dataclass
class TrainingFacts:
    """What a card says about a run: filled by `pr train` / `pr sft` from their config."""

    stage: str  # "sft" or "grpo"
    model: str  # as given: alias, hub id or local folder
    data: Path | str  # a file or folder, or a hub dataset's name
    examples: int
    settings: dict[str, Any]  # the run's main hyperparameters, by their option names
    rewards: dict[str, float] = field(default_factory=dict)  # weight per reward (GRPO)
    judge: str | None = None  # the perception judge (GRPO)
    hub_model_id: str | None = None
    data_revision: str | None = None  # a hub dataset's --revision

    @property
    def name(self) -> str:
        return Path(str(self.settings.get("output_dir", "model"))).name

    @property
    def method(self) -> str:
        if self.stage == "sft":
            return "supervised fine-tuning on worked solutions (a warm start before GRPO)"
        if self.rewards.get("perception"):
            return "Perception-R1: GRPO with a visual perception reward"
        return "GRPO with verifiable rewards only (accuracy-only RLVR, no perception reward)"


def base_model_of(model: str) -> tuple[str | None, str | None]:
    """(hub id of the model a run started from, local folder it was loaded from).

    A local folder is followed to its hub base through the card prcli wrote with it, or read from
    the Hugging Face cache's layout (`models--org--name/snapshots/...`); a folder whose origin
    cannot be told gives no hub id, and the card names the folder instead of guessing. (A hub
    model's own card names its parent, not itself, so only prcli's cards are followed.)"""
    path = Path(model).expanduser()
    if not path.is_dir():
        return resolve_model(model), None
    local = str(path.resolve())
    card = path / CARD
    if card.is_file():
        from huggingface_hub import ModelCard

        meta = ModelCard.load(card).data.to_dict()
        if "prcli" in (meta.get("tags") or []):
            return meta.get("base_model"), local
    for part in path.resolve().parts:
        if part.startswith("models--") and part.count("--") >= 2:
            return part.removeprefix("models--").replace("--", "/", 1), local
    return None, local


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_line(data: Path | str, revision: str | None = None) -> str:
    if isinstance(data, str):
        if revision:
            from urllib.parse import quote

            line = f"hub dataset [{data}](https://huggingface.co/datasets/{data}/tree/{quote(revision, safe='')})"
            if re.fullmatch(r"[0-9a-f]{40}", revision):
                return f"{line} at commit `{revision}`"
            return (
                f"{line} at revision `{revision}` (a branch or tag: the commit it named then is not recorded)"
            )
        return f"hub dataset [{data}](https://huggingface.co/datasets/{data}), revision not pinned (its latest when trained)"
    if data.is_file():
        return f"file `{data.name}`, sha256 `{_sha256(data)}`"
    return f"dataset folder `{data.name}`"


def _cell(key: str, value: Any) -> str:
    """A settings table cell: a custom prompt by its hash (it may hold line breaks and `|`), the one
    config.yaml records as `prompt_text_hash`."""
    from prcli.prompts import TEMPLATES
    from prcli.train.checkpoints import prompt_text_hash

    if key == "prompt_template" and value not in TEMPLATES:
        return f"custom text, prompt_text_hash {prompt_text_hash(str(value))}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_card(facts: TrainingFacts) -> str:
    """The card's text: YAML metadata the Hub reads, then what a reader needs to trust the model."""
    from huggingface_hub import ModelCard, ModelCardData

    import prcli

    base, local = base_model_of(facts.model)
    tags = ["prcli", "vision-language", "trl", "sft" if facts.stage == "sft" else "grpo"]
    if facts.rewards.get("perception"):
        tags.append("perception-r1")
    data = ModelCardData(
        base_model=base,
        datasets=[facts.data] if isinstance(facts.data, str) else None,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=tags,
    )
    # folder names only: a card goes public, the paths of the machine it was made on need not
    started = (
        f"[{base}](https://huggingface.co/{base})" if base else f"the local model `{Path(str(local)).name}`"
    )
    if base and local:
        started += f" (by way of the local checkpoint `{Path(local).name}`)"
    lines = [
        f"# {facts.hub_model_id or facts.name}",
        "",
        f"Trained from {started} by [prcli](https://github.com/prcli/prcli) {prcli.__version__} with "
        f"{facts.method}.",
        "",
        "## Training data",
        "",
        f"- {_data_line(facts.data, facts.data_revision)} ({facts.examples} examples used)",
    ]
    if facts.rewards:
        lines += ["", "## Rewards", "", "| reward | weight |", "|---|---|"]
        lines += [f"| {reward} | {weight:g} |" for reward, weight in facts.rewards.items()]
        if facts.judge:
            lines += ["", f"Perception judge: {facts.judge}."]
    lines += ["", "## Training settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(k, v)} |" for k, v in facts.settings.items() if k != "output_dir"]
    lines += [
        "",
        "## Citation",
        "",
        f"The method is Perception-R1 ({PAPER}):",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)).content


def write_card(folder: Path, facts: TrainingFacts) -> Path:
    path = folder / CARD
    write_text_atomic(path, render_card(facts))
    return path


def publish(folder: Path, card: TrainingFacts, push: bool) -> str | None:
    """The final model's card, and its push when asked (main process only): the commit's URL.

    A push that fails leaves the trained model where it is and says how to upload it by hand."""
    write_card(folder, card)
    if not push:
        return None
    repo = card.hub_model_id or card.name
    try:
        return push_final(folder, repo)
    except Exception as exc:  # the Hub's HTTP, auth and network errors have no common base
        raise StageError(
            f"the model is saved in {folder}, but pushing it to the Hub repository {repo} failed "
            f"({type(exc).__name__}: {exc}); upload it with: hf upload {repo} {folder}"
        ) from None


PUSH_IGNORE = ("checkpoint-*", "checkpoint-*/**", "_*", "runs/**", "config.yaml", "*.jsonl")
"""Not uploaded: checkpoints, logs, and the run's own records (config.yaml holds local paths and server
URLs, the JSONL files training rows and rollouts); the card states the settings."""


def published_files(folder: Path) -> list[str]:
    """What `push_final` uploads from `folder`, by the Hub client's own pattern matching."""
    from huggingface_hub.utils import filter_repo_objects

    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(files, ignore_patterns=list(PUSH_IGNORE)))


def push_final(folder: Path, repo_id: str) -> str:
    """Upload the final model and its card; the commit's URL."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True)
    info = upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message="prcli: final model",
        ignore_patterns=list(PUSH_IGNORE),
    )
    return str(info.commit_url)


# ----------------------------------------------------------------------------- eval results


def card_file(folder: Path) -> Path:
    path = folder / CARD
    if not path.is_file():
        raise StageError(f"--model-card: {path} not found (pr train and pr sft write it with the model)")
    return path


def add_eval_results(folder: Path, results: list[dict[str, Any]]) -> Path:
    """Write `results` ({title, hub_id, split, metric, value, protocol}) into the card's `model-index`,
    replacing earlier results of the same benchmark, split, metric and protocol."""
    from huggingface_hub import EvalResult, ModelCard

    path = card_file(folder)
    card = ModelCard.load(path)
    new = [
        EvalResult(
            task_type="image-text-to-text",
            dataset_type=r["hub_id"],
            dataset_name=r["title"],
            dataset_split=r["split"],
            metric_type=r["metric"],
            metric_name=f"{r['metric']} ({r['protocol']} protocol)",
            metric_value=round(r["value"], 2),
        )
        for r in results
    ]
    keys = {(e.dataset_type, e.dataset_split, e.metric_name) for e in new}
    kept = [
        e
        for e in (card.data.eval_results or [])
        if (e.dataset_type, e.dataset_split, e.metric_name) not in keys
    ]
    card.data.eval_results = kept + new
    card.data.model_name = card.data.model_name or folder.resolve().name
    write_text_atomic(path, str(card))
    return path
