"""Experiment trackers: the options every stage shares, and runs for the stages that do not train.

`pr train` and `pr sft` report through TRL (checked and placed here first); `pr eval`, `judge`,
`annotate` and `mcnemar` open a TensorBoard or W&B run themselves:
before any work (a tracker that cannot start is an error then, not after hours of judging), and
at the end they log the stage's summary numbers as metrics and its per-item results and a sample
of completions as tables (W&B tables; markdown tables in TensorBoard's text tab).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, Field, model_validator

from prcli.config import plain_values
from prcli.errors import StageError
from prcli.jsonl import INPUT_HASH
from prcli.ui import console

ReportTo = Literal["none", "tensorboard", "wandb"]

MAX_TABLE_ROWS = 20_000
"""Per-item tables stop here (the table says how many rows it shows of how many)."""

SAMPLE_ROWS = 16
"""Completions shown in a stage's sample table: the output's first ones."""


def _run_name(value: str | None) -> str | None:
    """A name that is also one folder (TensorBoard) and a valid W&B name."""
    if value is None:
        return None
    if value in (".", "..") or not re.fullmatch(r"[^/\\#?%:\s][^/\\#?%:]*", value):
        raise ValueError(f"{value!r}: one name without / \\ # ? % : or leading space, not . or ..")
    return value


RunName = Annotated[str | None, AfterValidator(_run_name)]


class TrackerOptions(BaseModel):
    """`--report-to`, `--run-name`, `--project`: one definition, mixed into each reporting stage's config
    (`class EvalConfig(StageConfig, TrackerOptions)`)."""

    report_to: ReportTo = Field(
        "none",
        description="Experiment tracker: none, tensorboard (event files in runs/RUN_NAME beside the output; "
        "pr mcnemar: the working folder) or wandb (honours WANDB_MODE, WANDB_DIR, WANDB_ENTITY; the key only "
        "from WANDB_API_KEY or `wandb login`).",
    )
    run_name: RunName = Field(
        None, description="The tracker run's name (default: STAGE-YYYYmmdd-HHMMSS-xxxx, saved in the config)."
    )
    project: RunName = Field(
        None,
        description="W&B project (default: $WANDB_PROJECT, else prcli); with tensorboard, a folder "
        "grouping runs: runs/PROJECT/RUN_NAME.",
    )

    @model_validator(mode="after")
    def _needs_a_tracker(self) -> TrackerOptions:
        if self.report_to == "none" and (self.run_name or self.project):
            raise ValueError("--run-name and --project need --report-to tensorboard or wandb")
        return self


# ----------------------------------------------------------------------------- what a run logs


@dataclass
class Table:
    name: str
    columns: list[str]
    rows: list[list[Any]]
    total: int  # rows the source has; `rows` holds the first MAX_TABLE_ROWS (or SAMPLE_ROWS) of them
    source: Path | None = None

    def caption(self) -> str:
        shown = (
            f"all {self.total} rows"
            if len(self.rows) == self.total
            else f"{len(self.rows)} of {self.total} rows"
        )
        return shown + (f" of {self.source}" if self.source else "")


@dataclass
class Report:
    metrics: dict[str, float]
    tables: list[Table]

    def numbers(self) -> dict[str, float]:
        """The metrics, and how many rows each table shows of how many its source has."""
        shown = {f"tables/{t.name}_rows": float(len(t.rows)) for t in self.tables}
        return {**self.metrics, **shown, **{f"tables/{t.name}_total": float(t.total) for t in self.tables}}


def flat_numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a summary, keyed by its path (`breakdown/task/geometry/accuracy`); booleans
    count as 0/1, text and nulls are left out."""
    if isinstance(obj, dict):
        items: Iterator[tuple[Any, Any]] = iter(obj.items())
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif isinstance(obj, (bool, int, float)):
        return {prefix: float(obj)}
    else:
        return {}
    out: dict[str, float] = {}
    for key, value in items:
        out.update(flat_numbers(value, f"{prefix}/{key}" if prefix else str(key)))
    return out


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value


def jsonl_table(
    name: str,
    path: Path,
    *,
    columns: list[str] | None = None,
    leave_out: tuple[str, ...] = (),
    limit: int = MAX_TABLE_ROWS,
) -> Table:
    """The first `limit` lines of a stage's own JSONL output as a table: `columns`, or every field in
    order of first appearance but `leave_out` (long texts) and the resume hash; lists and objects as
    JSON text."""
    leave_out = (*leave_out, INPUT_HASH)
    rows: list[dict[str, Any]] = []
    total = 0
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                total += 1
                if len(rows) < limit:
                    rows.append(json.loads(line))
    names = columns or list(dict.fromkeys(k for row in rows for k in row if k not in leave_out))
    return Table(name, names, [[_cell(row.get(c)) for c in names] for row in rows], total, path)


# ----------------------------------------------------------------------------- the trackers


class Tracker(Protocol):
    def log(self, report: Report) -> None: ...

    def close(self, *, failed: bool) -> None: ...


def _markdown(table: Table) -> str:
    def text(value: Any) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", "<br>")

    lines = [
        f"*{table.caption()}*",
        "",
        "| " + " | ".join(map(text, table.columns)) + " |",
        "|" + "---|" * len(table.columns),
    ]
    lines += ["| " + " | ".join(map(text, row)) + " |" for row in table.rows]
    return "\n".join(lines)


class TensorBoard:
    """Scalars and markdown tables in `log_dir`, written when the stage has finished (a stage that
    fails leaves no run). A run name used before (a resumed stage) goes on at the next step, so each
    attempt's numbers stay apart."""

    def __init__(self, log_dir: Path):
        self.writer_class, self.log_dir = _tensorboard_writer(), log_dir

    def log(self, report: Report) -> None:
        step = len(list(self.log_dir.glob("events.out.tfevents.*"))) if self.log_dir.is_dir() else 0
        with self.writer_class(log_dir=str(self.log_dir)) as writer:
            for tag, value in report.numbers().items():
                writer.add_scalar(tag, value, step)
            for table in report.tables:
                writer.add_text(table.name, _markdown(table), step)
        console.print(f"tensorboard run: {self.log_dir} (step {step})", markup=False, highlight=False)

    def close(self, *, failed: bool) -> None:
        """Nothing is left open: `log` wrote and closed the event file."""


def wandb_ready() -> Any:
    """The wandb module, once it is sure a run would log: installed, not disabled, a key unless offline
    (without one wandb asks on a terminal, where one answer silently goes offline)."""
    try:
        import wandb
    except ImportError:
        raise StageError(
            "--report-to wandb needs the wandb package: pip install wandb (or prcli[wandb])"
        ) from None
    try:
        mode = wandb.setup().settings.mode
        logged_in = mode in ("offline", "dryrun") or wandb.login(prompt=False, verify=False)
    except Exception as exc:  # bad WANDB_* settings
        raise StageError(f"--report-to wandb: {_without_key(str(exc))}") from None
    if mode == "disabled":  # wandb would accept every call and keep nothing
        raise StageError(
            "--report-to wandb, but WANDB_MODE (or `wandb disabled`) turns W&B off: nothing would "
            "be logged; unset it, set WANDB_MODE=offline, or use --report-to none"
        )
    if not logged_in:
        raise StageError(
            "--report-to wandb: no W&B API key; set WANDB_API_KEY (or run `wandb login`), or "
            "WANDB_MODE=offline to log locally and `wandb sync` later"
        )
    return wandb


def _without_key(text: str) -> str:
    key = os.environ.get("WANDB_API_KEY")
    return text.replace(key, "***") if key else text


def _tensorboard_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise StageError(
            "--report-to tensorboard needs the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter


def check_tracker(report_to: str) -> None:
    """The tracker can start (package, W&B mode and key): before a stage or a training run does any work."""
    if report_to == "wandb":
        wandb_ready()
    elif report_to == "tensorboard":
        _tensorboard_writer()


@contextlib.contextmanager
def trainer_tracking(cfg: TrackerOptions, trainer: Any, out: Path, label: str) -> Iterator[None]:
    """`pr train` / `pr sft` report through transformers' callbacks: their TensorBoard run goes where the
    other stages' go (runs/[PROJECT/]RUN_NAME beside the run), their W&B run into --project, for the
    duration of training only (nothing leaks into the next run of the same process)."""
    if cfg.report_to == "tensorboard" and (cfg.run_name or cfg.project):
        from transformers.integrations import TensorBoardCallback

        folder = out / "runs" / (cfg.project or "") / (cfg.run_name or default_run_name(label))
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback):
                callback.logging_dir = str(folder)
    before = os.environ.get("WANDB_PROJECT")
    if cfg.report_to == "wandb":  # transformers' own fallback is "huggingface"; every stage's is ours
        os.environ["WANDB_PROJECT"] = project_name(cfg)
    failed = True
    try:
        yield
        failed = False
    finally:
        if before is None:
            os.environ.pop("WANDB_PROJECT", None)
        else:
            os.environ["WANDB_PROJECT"] = before
        if cfg.report_to == "wandb":  # transformers leaves its run open: the next run would join it
            import wandb

            if wandb.run is not None:
                wandb.finish(exit_code=1 if failed else 0)


class WandB:
    """One W&B run; WANDB_MODE, WANDB_DIR, WANDB_ENTITY and the key are read by wandb itself."""

    def __init__(self, cfg: TrackerOptions, stage: str):
        wandb = wandb_ready()
        self.wandb = wandb
        try:
            self.run = wandb.init(
                project=project_name(cfg),
                reinit="create_new",  # a run left open in this process (a training run) stays its own
                name=cfg.run_name,
                job_type=stage,
                config=plain_values(cfg.model_dump(mode="python")),
                settings=wandb.Settings(console="off"),
            )
        except Exception as exc:  # wandb's own errors, a server that cannot be reached
            raise StageError(f"--report-to wandb: the run did not start: {_without_key(str(exc))}") from None

    def log(self, report: Report) -> None:
        tables = {
            t.name: self.wandb.Table(columns=t.columns, data=t.rows, allow_mixed_types=True)
            for t in report.tables
        }
        self.run.log({**report.numbers(), **tables})

    def close(self, *, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def open_tracker(cfg: TrackerOptions, stage: str, folder: Path) -> Tracker:
    """The run `cfg` asks for (`report_to` not none, `run_name` set), started now; StageError if it
    cannot start. TensorBoard's run folder is FOLDER/runs/[PROJECT/]RUN_NAME."""
    if cfg.report_to == "wandb":
        return WandB(cfg, stage)
    return TensorBoard(folder / "runs" / (cfg.project or "") / str(cfg.run_name))


def default_run_name(label: str) -> str:
    """STAGE-YYYYmmdd-HHMMSS-xxxx: two runs started in the same second (in parallel, or one after the
    other in a short stage) never share a run folder."""
    return f"{label}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def project_name(cfg: TrackerOptions) -> str:
    return cfg.project or os.environ.get("WANDB_PROJECT") or "prcli"


# ----------------------------------------------------------------------------- what each stage reports


@dataclass(frozen=True)
class StageReport:
    folder: Callable[[Any], Path]  # TensorBoard's runs/ goes here: beside the stage's output
    label: Callable[[Any], str]  # the default run name's start
    build: Callable[[Any, Any], Report]  # (config, the stage's result) -> what is logged


def _eval_report(cfg: Any, result: Any) -> Report:
    items = cfg.out / "items.jsonl"
    return Report(
        flat_numbers(result.summary),
        [
            jsonl_table("items", items, leave_out=("response", "judge_raw")),
            jsonl_table(
                "completions",
                items,
                columns=["id", "correct", "answer", "prediction", "response"],
                limit=SAMPLE_ROWS,
            ),
        ],
    )


def _judge_report(cfg: Any, result: Any) -> Report:
    sample = jsonl_table(
        "completions", cfg.out, columns=["id", "score", "verdicts", "raw"], limit=SAMPLE_ROWS
    )
    judged = _judged_responses(cfg, {row[0] for row in sample.rows})
    sample.columns[1:1] = ["response", "annotations"]
    for row in sample.rows:
        response, annotations = judged.get(row[0], (None, None))
        row[1:1] = [response, _cell(annotations)]
    return Report(
        flat_numbers(result.as_dict()), [jsonl_table("judgements", cfg.out, leave_out=("raw",)), sample]
    )


def _judged_responses(cfg: Any, ids: set[str]) -> dict[str, tuple[str | None, list[str] | None]]:
    """{id: (response, annotations)} of the judged responses among `ids`, read as `pr judge` read them
    (any input it takes, its --field map, its annotation join); lines it left out are left out."""
    from prcli.judge.run import annotation_join, load_annotations
    from prcli.records import Response
    from prcli.sources import Source, read_source

    by_id = load_annotations(cfg.annotations) if cfg.annotations else None
    join = annotation_join(by_id, cfg.annotation_key, cfg.annotations)
    found: dict[str, tuple[str | None, list[str] | None]] = {}
    for r in read_source(Source.of(cfg.responses, cfg), Response, skip_invalid=True, convert=join):
        if r.id in ids:
            found[r.id] = (r.response, r.annotations)
    return found


def _annotate_report(cfg: Any, result: Any) -> Report:
    from prcli.runs import sibling

    return Report(
        flat_numbers(result.as_dict()),
        [
            jsonl_table("annotated", cfg.out, columns=["id", "answer", "annotations"]),
            jsonl_table("dropped", sibling(cfg.out, ".dropped.jsonl"), columns=["id", "reason"]),
            jsonl_table(
                "completions", cfg.out, columns=["id", "question", "cot", "annotations"], limit=SAMPLE_ROWS
            ),
        ],
    )


def _mcnemar_report(cfg: Any, report: Any) -> Report:
    r = report.overall
    tables = [
        Table(
            "contingency",
            ["", "B right", "B wrong"],
            [["A right", r.both_correct, r.b], ["A wrong", r.c, r.both_wrong]],
            2,
        )
    ]
    if report.by:
        columns = ["value", "n", "b", "c", "acc_a", "acc_b", "difference", "p_value", "p_adjusted"]
        rows = [
            [c.value, *(getattr(c.result, k) for k in columns[1:-1]), c.p_adjusted] for c in report.categories
        ]
        tables.append(Table(f"by_{report.by}", columns, rows, len(rows)))
    return Report(flat_numbers({k: v for k, v in report.as_dict().items() if k != "by"}), tables)


STAGES: dict[str, StageReport] = {
    "eval": StageReport(lambda cfg: cfg.out, lambda cfg: f"eval-{cfg.bench}", _eval_report),
    "judge": StageReport(lambda cfg: cfg.out.parent, lambda cfg: "judge", _judge_report),
    "annotate": StageReport(lambda cfg: cfg.out.parent, lambda cfg: "annotate", _annotate_report),
    "mcnemar": StageReport(lambda cfg: Path.cwd(), lambda cfg: "mcnemar", _mcnemar_report),
}

F = TypeVar("F", bound=Callable[..., Any])


def tracked(stage: str) -> Callable[[F], F]:
    """Run a stage function `fn(cfg, ...)` under the tracker its config asks for.

    The tracker starts before the stage (so it fails first), the run name is resolved into the config
    the stage saves, the stage's numbers and tables are logged when it returns, and a stage that
    raises, or returns with failed items, closes its run as failed."""
    spec = STAGES[stage]

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(cfg: Any, *args: Any, **kwargs: Any) -> Any:
            if cfg.report_to == "none":
                return fn(cfg, *args, **kwargs)
            cfg = cfg.model_copy(update={"run_name": cfg.run_name or default_run_name(spec.label(cfg))})
            tracker = open_tracker(cfg, stage, spec.folder(cfg))
            try:
                result = fn(cfg, *args, **kwargs)
                tracker.log(spec.build(cfg, result))
            except BaseException:
                tracker.close(failed=True)
                raise
            # items that failed (the command exits 1 and the next run retries them): not a finished run
            tracker.close(failed=bool(getattr(result, "failed", 0)))
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
