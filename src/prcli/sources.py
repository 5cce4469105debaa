"""Stage inputs besides our JSONL: Hugging Face datasets, their columns mapped onto our record fields.

An input is our JSONL file (read as always), a parquet or arrow file, a folder `datasets.load_dataset`
reads (data files, or a dataset repository's layout), a `Dataset.save_to_disk` folder, or a hub dataset
`owner/name` (with `--subset`, `--split` and `--revision`). `--field ours=theirs` maps a column onto a record field;
columns already named like our fields need no map, and the released Perception-R1 / EasyR1 layout
(`problem`, `answer`, `images`, `visual_key_info` with `<infoK>` tags) is recognised by its columns.

A dataset is written out on every run as a JSONL in the cache (each image once, named by its content)
and read by `check_jsonl` like any JSONL: one validation, one resume rule (records hash their content,
and image paths depend only on the image), errors named after the dataset's row and column
(`geo3k.parquet row 12: answer: ...`). Writing it every run, instead of keeping a copy keyed by
modification times or a `datasets` fingerprint, means an edited dataset is never read stale.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from prcli.annotate.extract import parse_annotations
from prcli.cache import default_cache_dir
from prcli.convert import RELEASED_FIELDS, BadImage, image_bytes, image_suffix, jsonable
from prcli.jsonl import (
    CheckedInput,
    InputError,
    LineProblem,
    RowNames,
    atomic_open,
    check_jsonl,
    content_hash,
    write_jsonl_atomic,
)

T = TypeVar("T", bound=BaseModel)

HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow", ".csv", ".tsv", ".txt")
_FILE_KINDS = {b"PAR1": "parquet", b"ARROW1": "arrow"}  # leading bytes
_SUFFIX_KINDS = {".parquet": "parquet", ".arrow": "arrow"}
RELEASED_LAYOUT = ("problem", "answer")  # columns that mark the released / EasyR1 layout
VERSION = 1  # of the materialised layout: part of its file name


def _classify(value: Any) -> Any:
    """A path that exists (or names a data file) stays a path; `owner/name` otherwise is a hub dataset."""
    if not isinstance(value, (str, Path)):
        return value
    text = str(value)
    path = Path(text).expanduser()
    if not path.exists() and HUB_NAME.fullmatch(text) and path.suffix.lower() not in _DATA_SUFFIXES:
        return text
    return path


DataSource = Annotated[Path | str, BeforeValidator(_classify)]
"""A stage's input: a local path (JSONL, parquet, arrow, a dataset folder) or a hub dataset name."""
OptionalDataSource = Annotated[Path | str | None, BeforeValidator(_classify)]


def parse_field_map(entries: list[str]) -> dict[str, str]:
    """`["question=problem", ...]` -> {our field: their column}; malformed or repeated entries are errors."""
    out: dict[str, str] = {}
    for entry in entries:
        ours, sep, theirs = (part.strip() for part in entry.partition("="))
        if not sep or not ours or not theirs:
            raise ValueError(f"{entry!r}: expected OURS=THEIRS, e.g. question=problem")
        if ours in out:
            raise ValueError(f"{ours} is mapped twice ({ours}={out[ours]} and {entry})")
        out[ours] = theirs
    return out


class SourceOptions(BaseModel):
    """The options of a stage that reads problems or responses: how a dataset's columns become records."""

    input_field: ClassVar[str] = "data"  # the option naming the stage's main input (what --revision pins)

    field: list[str] = Field(
        default_factory=list,
        description="Map a dataset column onto a record field, OURS=THEIRS, repeatable: --field "
        "question=problem --field images=image. Columns named like our fields need none, nor does the "
        "released Perception-R1 parquet (problem, answer, images, visual_key_info).",
    )
    subset: str | None = Field(
        None, description="The dataset's configuration (a hub dataset or dataset folder)."
    )
    split: str | None = Field(None, description="The dataset's split (needed when it has several).")
    revision: str | None = Field(
        None,
        description="The main input's version when it is a hub dataset: branch, tag or commit (recorded in "
        "config.yaml and the model card; not applied to pr train --eval-data). Without it the hub's latest "
        "is read, and the card says the version was not pinned.",
    )

    @model_validator(mode="after")
    def _revision_for_hub_data(self) -> Self:
        spec = getattr(self, self.input_field, None)
        if self.revision and isinstance(spec, Path):
            raise ValueError(f"--revision pins a hub dataset's version; {spec} is local data")
        return self

    @field_validator("field", mode="before")
    @classmethod
    def _from_mapping(cls, value: Any) -> Any:
        """YAML may give the map as a mapping (`field: {question: problem}`)."""
        return [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else value

    @field_validator("field")
    @classmethod
    def _well_formed(cls, value: list[str]) -> list[str]:
        parse_field_map(value)
        return value


@dataclass(frozen=True)
class Source:
    """One input to read: where it is, and how its columns map onto our fields."""

    spec: Path | str
    fields: Mapping[str, str]
    subset: str | None = None
    split: str | None = None
    revision: str | None = None

    @classmethod
    def of(cls, spec: Path | str, options: SourceOptions, split: str | EllipsisType | None = ...) -> Source:
        """The source `spec` under a stage's options (`split` instead of theirs: `--eval-split`, a second
        input, which --revision does not pin)."""
        if split is ...:
            return cls(spec, parse_field_map(options.field), options.subset, options.split, options.revision)
        return cls(spec, parse_field_map(options.field), options.subset, split)

    @property
    def label(self) -> Path:
        """How problems name this input: as given, with the split the user chose."""
        name = f"{self.spec}@{self.revision}" if self.revision else str(self.spec)
        return Path(f"{name} ({self.split} split)" if self.split else name)


def local_path(spec: Path | str | None) -> Path | None:
    """The local path of an input, None for a hub dataset (or no input)."""
    return spec if isinstance(spec, Path) else None


def read_source(
    source: Source,
    model: type[T],
    *,
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    **kwargs: Any,
) -> CheckedInput[T]:
    """`check_jsonl` of any input: a JSONL as it is (with `--field` renaming its keys), a dataset
    written out as one (`materialise`), its problems named after the dataset's rows and columns."""
    _check_targets(source, model)
    if source.revision and isinstance(source.spec, Path):
        raise _error(source, "--revision pins a hub dataset's version; this is a local file or folder")
    if isinstance(source.spec, Path) and _file_kind(source.spec) == "jsonl":
        if source.subset or source.split:
            raise _error(source, "--subset and --split choose within a dataset; this is a JSONL file")
        rename = _renamer(source.fields) if source.fields else None
        both = rename if convert is None or rename is None else lambda obj: convert(rename(obj))
        return check_jsonl(source.spec, model, convert=both or convert, **kwargs)
    if isinstance(source.spec, Path) and not source.spec.exists():
        raise _error(source, "file not found")
    dataset, base = _load(source)
    columns = _columns(dataset.column_names, source, model)
    records = materialise(dataset, columns, base, _records_path(source, columns))
    renamed = {ours: theirs for ours, theirs in columns.items() if ours != theirs}
    return check_jsonl(records, model, convert=convert, names=RowNames(source.label, renamed), **kwargs)


def _error(source: Source, message: str) -> InputError:
    return InputError([LineProblem(source.label, 0, message)])


def _check_targets(source: Source, model: type[BaseModel]) -> None:
    """Every `--field` names a field of the records this stage reads (a typo is caught here, once)."""
    known = list(model.model_fields)
    for ours, theirs in source.fields.items():
        if ours not in known:
            close = difflib.get_close_matches(ours, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise _error(
                source,
                f"--field {ours}={theirs}: {ours} is not a field of these records; {hint}(fields: {', '.join(known)})",
            )


def _columns(names: list[str], source: Source, model: type[BaseModel]) -> dict[str, str]:
    """{our field: the dataset's column}: columns named like our fields, the released layout, then `--field`."""
    fields = model.model_fields
    columns = {name: name for name in names if name in fields}
    if all(c in names for c in RELEASED_LAYOUT):
        columns.update(
            {
                ours: theirs
                for ours, theirs in RELEASED_FIELDS.items()
                if theirs in names and ours in fields and ours not in names
            }
        )
    for ours, theirs in source.fields.items():
        if theirs not in names:
            close = difflib.get_close_matches(theirs, names, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise _error(
                source, f"--field {ours}={theirs}: no column {theirs}; {hint}(columns: {', '.join(names)})"
            )
        columns[ours] = theirs
    missing = [f for f, info in fields.items() if info.is_required() and f != "id" and f not in columns]
    if missing:
        maps = " ".join(f"--field {f}=COLUMN" for f in missing)
        raise _error(
            source, f"no column for {', '.join(missing)}: map one with {maps} (columns: {', '.join(names)})"
        )
    return columns


def _mapped(row: dict[str, Any], columns: Mapping[str, str], images: Callable[[Any], Any]) -> dict[str, Any]:
    """A row with its columns under our field names and values in our shapes: `images` a list of paths,
    `annotations` given as `<infoK>` text (or a numbered list) parsed, integer ids as text."""
    used = set(columns.values())
    out = {k: v for k, v in row.items() if k not in used}
    for ours, theirs in columns.items():
        if theirs not in row:  # a JSONL line; a dataset's rows all have its columns
            raise ValueError(f"{theirs}: column missing (--field {ours}={theirs})")
        value = row[theirs]
        if ours == "images":
            value = images(value)
        elif ours == "annotations" and isinstance(value, str):
            value = parse_annotations(value)
        elif ours == "id" and type(value) is int:
            value = str(value)
        out[ours] = value
    return out


def _renamer(fields: Mapping[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`--field` on a JSONL file: each line's keys renamed (its image paths stay relative to the file)."""
    return lambda obj: _mapped(obj, fields, lambda v: [] if v is None else v if isinstance(v, list) else [v])


def record_of(
    row: dict[str, Any], index: int, columns: Mapping[str, str], base: Path | None, images: Path
) -> dict[str, Any]:
    """One dataset row as a JSON record: embedded images written into `images`, relative image paths
    resolved against `base` (the dataset's folder). Unmapped columns JSON cannot hold (images, dates)
    are left out; a mapped value JSON cannot hold is replaced by a note its validation then refuses."""
    out = _mapped(row, columns, lambda value: _image_paths(value, base, images))
    out = {k: v for k, v in out.items() if k in columns or jsonable(v)}
    for k in columns:
        if not jsonable(out[k]):
            out[k] = {"unsupported value": type(out[k]).__name__}
    out.setdefault("id", f"row-{index}")
    return out


def _image_paths(value: Any, base: Path | None, store: Path) -> list[Any]:
    entries = [] if value is None else value if isinstance(value, list) else [value]
    return [_image_path(entry, base, store) for entry in entries]


def _image_path(entry: Any, base: Path | None, store: Path) -> Any:
    """The path of one image entry (bytes, a path, a `{bytes, path}` struct); anything else is left as it
    is for validation to name."""
    try:
        data, path = image_bytes(entry)
    except BadImage:
        return entry
    if data is None:
        return path if base is None or Path(path).expanduser().is_absolute() else str(base / path)
    return str(store_image(data, store))


def store_image(data: bytes, store: Path) -> Path:
    """`data` written once under a name from its content: the same image keeps its path across runs and
    edits of the dataset. Bytes that are no image are kept as `.bin`, for validation to refuse."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()[:32]
    try:
        suffix = image_suffix(data)
    except BadImage:
        suffix = ".bin"
    target = store / digest[:2] / f"{digest}{suffix}"
    if not target.exists():
        with atomic_open(target, "wb") as fh:  # whole files only, whichever process wins
            fh.write(data)
    return target


def materialise(dataset: Any, columns: Mapping[str, str], base: Path | None, records: Path) -> Path:
    """Write `dataset` as our JSONL at `records`, row i on line i + 1 (`RowNames` counts on it)."""

    def rows() -> Iterator[dict[str, Any]]:
        index = 0
        for batch in dataset.with_format("arrow").iter(batch_size=256):  # raw values: images undecoded
            for row in batch.to_pylist():
                yield record_of(row, index, columns, base, records.parent / "images")
                index += 1

    write_jsonl_atomic(records, rows())
    return records


def _records_path(source: Source, columns: Mapping[str, str]) -> Path:
    """Where a dataset is written out: one file per input and column map, in the prcli cache."""
    spec = str(source.spec.resolve()) if isinstance(source.spec, Path) else source.spec
    key = content_hash(VERSION, spec, source.subset, source.split, source.revision, sorted(columns.items()))
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(str(source.spec)).stem).strip("_")[:40] or "dataset"
    return default_cache_dir() / "datasets" / f"{stem}-{key}.jsonl"


def _file_kind(path: Path) -> str:
    """jsonl, parquet or arrow, from the suffix or leading bytes (a missing path is a JSONL not found)."""
    if path.suffix.lower() in _SUFFIX_KINDS:
        return _SUFFIX_KINDS[path.suffix.lower()]
    if path.is_dir():
        return "folder"
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(8)
        return next((kind for magic, kind in _FILE_KINDS.items() if head.startswith(magic)), "jsonl")
    return "jsonl"


def _load(source: Source) -> tuple[Any, Path | None]:
    """The chosen split of the input as a `datasets.Dataset`, and the folder its relative paths start at."""
    import datasets

    spec, subset, split = source.spec, source.subset, source.split
    # Local data is prepared anew each time: `datasets` keys its Arrow cache of local files on their
    # modification times, which an edit can keep (cp -p, rsync -t, a coarse clock): read stale, silently.
    fresh = datasets.DownloadMode.FORCE_REDOWNLOAD
    quiet = logging.getLogger(
        "datasets"
    )  # a file it cannot read is logged there and raised: said once, below
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        if isinstance(spec, str):
            return _one_split(
                source, lambda s: datasets.load_dataset(spec, subset, split=s, revision=source.revision)
            ), None
        spec = spec.expanduser().resolve()  # relative image paths start at the dataset's real folder
        if (spec / "dataset_dict.json").is_file() or (spec / "state.json").is_file():
            if subset:
                raise _error(source, "--subset: a save_to_disk folder has no configurations")
            return _pick(source, datasets.load_from_disk(str(spec))), spec
        if spec.is_dir():
            return _one_split(
                source, lambda s: datasets.load_dataset(str(spec), subset, split=s, download_mode=fresh)
            ), spec
        if subset or split:
            raise _error(source, "--subset and --split choose within a dataset; this is one file")
        kind = _file_kind(spec)
        return datasets.load_dataset(
            kind, data_files=str(spec), split="train", download_mode=fresh
        ), spec.parent
    except (OSError, ValueError) as exc:
        where = "not a local file or folder, and the hub dataset" if isinstance(spec, str) else "the dataset"
        raise _error(source, f"{where} cannot be loaded: {exc}") from None
    finally:
        quiet.setLevel(level)


def _one_split(source: Source, load: Callable[[str], Any]) -> Any:
    """`load(split)` of the split asked for, or of the only one; several and none asked is an error."""
    import datasets

    if source.split:
        return load(source.split)
    names = datasets.get_dataset_split_names(str(source.spec), source.subset, revision=source.revision)
    if len(names) != 1:
        raise _error(source, f"the dataset has splits {', '.join(names)}: choose one with --split")
    return load(names[0])


def _pick(source: Source, loaded: Any) -> Any:
    """The chosen split of a `load_from_disk` result (a Dataset, or a DatasetDict of splits)."""
    import datasets

    if isinstance(loaded, datasets.Dataset):
        if source.split:
            raise _error(source, "--split: this folder holds one dataset, not a dict of splits")
        return loaded
    if source.split in loaded:
        return loaded[source.split]
    if source.split is None and len(loaded) == 1:
        return next(iter(loaded.values()))
    asked = f"no split {source.split}" if source.split else "choose a split with --split"
    raise _error(source, f"{asked} (splits: {', '.join(loaded)})")
