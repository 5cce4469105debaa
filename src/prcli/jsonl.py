"""JSONL I/O: validated streaming reads with FILE:LINE errors, atomic writes, append-with-resume.

Reading is two streaming passes: `check_jsonl` validates every line first (so a bad line stops a
stage before it writes anything), then `CheckedInput` iterates the valid records. Memory does not
grow with the file, apart from the set of ids used to catch duplicates.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import re
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

MAX_LINE_BYTES = 64 * 1024 * 1024
MAX_SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class LineProblem:
    """One thing wrong with one line of one file (line 0: the file as a whole), or with one row of a
    dataset (`unit="row"`: `line` is the row's index, `ds[line]`, 0 included)."""

    path: Path
    line: int
    message: str
    field: str | None = None
    unit: str = "line"

    def __str__(self) -> str:
        if self.unit == "row":
            where = f"{self.path} row {self.line}"
        else:
            where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


def renamed_field(field: str | None, columns: Mapping[str, str]) -> str | None:
    """A problem's field under the input's own column name (`question.x` -> `problem.x`)."""
    if field is None:
        return None
    head = re.split(r"[.\[]", field, maxsplit=1)[0]
    return columns[head] + field[len(head) :] if head in columns else field


@dataclass(frozen=True)
class RowNames:
    """How the problems of a JSONL materialised from a dataset (row i on line i + 1) are shown: after
    the dataset, its row and its column, which the user can open, not the file prcli wrote."""

    source: Path
    columns: Mapping[str, str] = field(default_factory=dict)  # our field -> the dataset's column

    def __call__(self, p: LineProblem) -> LineProblem:
        name = renamed_field(p.field, self.columns)
        if not p.line:
            return LineProblem(self.source, 0, p.message, name)
        return LineProblem(self.source, p.line - 1, p.message, name, unit="row")

    def at(self, line: int) -> str:
        return f"row {line - 1}"


class InputError(Exception):
    """Bad input. `str()` lists the problems as `FILE:LINE: field: problem`, one per line."""

    def __init__(self, problems: list[LineProblem], total: int | None = None):
        self.problems = problems
        self.total = total if total is not None else len(problems)
        shown = [str(p) for p in problems[:MAX_SHOWN_PROBLEMS]]
        more = self.total - len(shown)
        if more > 0:
            shown.append(f"... and {more} more problem(s)")
        super().__init__("\n".join(shown))


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(record)"


def _describe(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "required field is missing"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if kind.endswith("_type") or kind in {"string_type", "bool_type", "int_type", "list_type", "dict_type"}:
        got = json.dumps(err.get("input"), ensure_ascii=False, default=str)
        if len(got) > 60:
            got = got[:57] + "..."
        msg = f"{msg} (got {got})"
    return msg


def validation_problems(path: Path, line: int, exc: ValidationError) -> list[LineProblem]:
    return [LineProblem(path, line, _describe(e), _field_path(tuple(e["loc"]))) for e in exc.errors()]


def iter_raw_lines(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw bytes) for each line; None for a line over MAX_LINE_BYTES."""
    with open(path, "rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the oversized line
                    raw = fh.readline(MAX_LINE_BYTES)
                yield lineno, None
                continue
            yield lineno, raw


def parse_line(path: Path, lineno: int, raw: bytes | None) -> dict[str, Any] | LineProblem | None:
    """A JSON object, a LineProblem, or None for a blank line."""
    if raw is None:
        return LineProblem(path, lineno, f"line is longer than {MAX_LINE_BYTES} bytes")
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineProblem(
            path, lineno, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        )
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return LineProblem(path, lineno, f"invalid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(obj, dict):
        return LineProblem(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def read_json(path: Path, **loads: Any) -> Any:
    """A whole JSON file (`loads`: `json.loads` options), its problems named as a JSONL line's are."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"), **loads)
    except UnicodeDecodeError as exc:
        raise InputError([LineProblem(path, 0, f"not valid UTF-8 (byte offset {exc.start})")]) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            [LineProblem(path, exc.lineno, f"invalid JSON: {exc.msg} at column {exc.colno}")]
        ) from None


def json_object(path: Path, lineno: int, raw: bytes | None) -> dict[str, Any]:
    """One non-blank line as a JSON object (`parse_line`), its problem raised."""
    obj = parse_line(path, lineno, raw)
    if isinstance(obj, LineProblem) or obj is None:
        raise InputError([obj or LineProblem(path, lineno, "blank line")])
    return obj


# Leading bytes and suffixes of formats people pass by mistake: one clear error instead of a
# screenful of "invalid JSON" lines.
_FOREIGN_MAGIC = {
    b"PAR1": "a parquet file",
    b"ARROW1": "an Arrow file",
    b"PK\x03\x04": "a zip archive (or an Excel workbook)",
    b"\x1f\x8b": "a gzip-compressed file; decompress it first",
    b"%PDF": "a PDF file",
}
_FOREIGN_SUFFIXES = {
    ".parquet": "a parquet file",
    ".arrow": "an Arrow file",
    ".feather": "an Arrow file",
    ".csv": "a CSV file",
    ".tsv": "a TSV file",
    ".xlsx": "an Excel workbook",
    ".xls": "an Excel workbook",
}


def require_jsonl_file(path: Path) -> None:
    """Raise InputError with one problem if `path` is missing, a folder, or plainly another format."""
    if not path.exists():
        raise InputError([LineProblem(path, 0, "file not found")])
    if path.is_dir():
        raise InputError([LineProblem(path, 0, "is a folder, expected a JSONL file")])
    with open(path, "rb") as fh:
        head = fh.read(8)
    kind = next((k for magic, k in _FOREIGN_MAGIC.items() if head.startswith(magic)), None)
    kind = kind or _FOREIGN_SUFFIXES.get(path.suffix.lower())
    if kind:
        hint = " (`pr convert` reads the released Perception-R1 parquet)" if "parquet" in kind else ""
        message = f"expected a JSONL file (one JSON object a line), got {kind}{hint}"
        raise InputError([LineProblem(path, 0, message)])


@dataclass
class ScannedLine(Generic[T]):
    line: int
    raw: bytes | None
    record: T | None
    problems: list[LineProblem]


def scan_jsonl(
    path: str | Path,
    model: type[T],
    *,
    context: dict[str, Any] | None = None,
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Iterator[ScannedLine[T]]:
    """Validate each non-blank line of `path` against `model` (duplicates are `check_jsonl`'s job).

    `convert`, if given, maps each raw JSON object before validation (e.g. a foreign layout).
    """
    path = Path(path)
    ctx = {"base_dir": path.resolve().parent, **(context or {})}
    for lineno, raw in iter_raw_lines(path):
        parsed = parse_line(path, lineno, raw)
        if parsed is None:
            continue
        if isinstance(parsed, LineProblem):
            yield ScannedLine(lineno, raw, None, [parsed])
            continue
        try:
            record = model.model_validate(convert(parsed) if convert else parsed, context=ctx)
        except ValidationError as exc:
            yield ScannedLine(lineno, raw, None, validation_problems(path, lineno, exc))
            continue
        except (ValueError, TypeError, KeyError) as exc:  # from `convert`
            yield ScannedLine(lineno, raw, None, [LineProblem(path, lineno, str(exc))])
            continue
        yield ScannedLine(lineno, raw, record, [])


def id_hash(value: str) -> int:
    """A signed 64-bit hash of an id (stable across runs), for compact id sets and indexes."""
    return int.from_bytes(
        hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little", signed=True
    )


def find_duplicates(path: Path, key: str, keyed_lines: array) -> list[tuple[int, int, Any]]:
    """(line, first line, value) for each line whose `key` repeats an earlier line's.

    `keyed_lines` holds (id hash, line) pairs, 16 bytes a line. A 2 MB bitmap over the hashes finds
    the few that may repeat; only those lines are read again to compare the actual values.
    """
    bits = bytearray(1 << 21)
    maybe: set[int] = set()
    for h in keyed_lines[0::2]:
        slot = h & ((1 << 24) - 1)
        if bits[slot >> 3] & (1 << (slot & 7)):
            maybe.add(h)
        bits[slot >> 3] |= 1 << (slot & 7)
    candidates = {line for h, line in zip(keyed_lines[0::2], keyed_lines[1::2], strict=True) if h in maybe}
    if not candidates:
        return []
    values: dict[int, Any] = {}
    for lineno, raw in iter_raw_lines(path):
        if lineno in candidates:
            obj = parse_line(path, lineno, raw)
            values[lineno] = obj.get(key) if isinstance(obj, dict) else None
    first: dict[str, int] = {}
    out = []
    for line in sorted(values):
        value = str(values[line])
        if value in first:
            out.append((line, first[value], values[line]))
        else:
            first[value] = line
    return out


@dataclass
class CheckedInput(Generic[T]):
    """A validated JSONL input; iterating streams its valid records (a second pass over the file)."""

    path: Path
    model: type[T]
    context: dict[str, Any]
    key: str | None
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None
    n_valid: int
    rejected_lines: set[int] = field(default_factory=set)
    problems: list[LineProblem] = field(default_factory=list)

    @property
    def n_rejected(self) -> int:
        return len(self.rejected_lines)

    def __iter__(self) -> Iterator[T]:
        for scanned in scan_jsonl(self.path, self.model, context=self.context, convert=self.convert):
            if scanned.record is not None and scanned.line not in self.rejected_lines:
                yield scanned.record

    def __len__(self) -> int:
        return self.n_valid


def check_jsonl(
    path: str | Path,
    model: type[T],
    *,
    skip_invalid: bool = False,
    rejected_path: str | Path | None = None,
    context: dict[str, Any] | None = None,
    key: str | None = "id",
    allow_empty: bool = False,
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    names: RowNames | None = None,
) -> CheckedInput[T]:
    """Validate all of `path` before any work starts.

    Raises InputError listing every problem unless `skip_invalid`, in which case the bad lines go to
    `rejected_path` (one `{"file", "line", "errors", "raw"}` object each) and are left out.
    `names`: `path` holds a dataset's rows, and problems are named after those (`{"file", "row", ...}`).
    """
    path = Path(path)
    require_jsonl_file(path)
    problems: list[LineProblem] = []
    rejected: list[dict[str, Any]] = []
    rejected_lines: set[int] = set()
    keyed_lines = array("q")  # (id hash, line) pairs: duplicates are found without keeping the ids
    n_valid = 0

    def reject(line: int, raw_bytes: bytes | None, line_problems: list[LineProblem]) -> None:
        rejected_lines.add(line)
        if names is not None:
            line_problems = [names(p) for p in line_problems]
        problems.extend(line_problems)
        raw = raw_bytes.decode("utf-8", errors="replace") if raw_bytes is not None else None
        if raw is not None and len(raw) > 1_000_000:
            raw = raw[:1_000_000] + "...[truncated]"
        where = (
            {"file": str(path), "line": line}
            if names is None
            else {"file": str(names.source), "row": line - 1}
        )
        rejected.append({**where, "errors": [str(p) for p in line_problems], "raw": raw})

    for scanned in scan_jsonl(path, model, context=context, convert=convert):
        if scanned.record is None:
            reject(scanned.line, scanned.raw, scanned.problems)
            continue
        n_valid += 1
        if key is not None:
            keyed_lines.extend((id_hash(str(getattr(scanned.record, key, None))), scanned.line))
    if key is not None:
        duplicates = find_duplicates(path, key, keyed_lines)
        dup_lines = {d[0] for d in duplicates}
        raws = {line: raw for line, raw in iter_raw_lines(path) if line in dup_lines} if dup_lines else {}
        for line, first, value in duplicates:
            earlier = names.at(first) if names is not None else f"line {first}"
            reject(
                line,
                raws.get(line),
                [LineProblem(path, line, f"duplicate {key} {value!r} (first at {earlier})", key)],
            )
            n_valid -= 1
        problems.sort(key=lambda p: p.line)
        rejected.sort(key=lambda r: r.get("line", r.get("row")))
    if problems and not skip_invalid:
        raise InputError(problems)
    if n_valid == 0 and not allow_empty:
        why = "no valid records" if problems else "empty file: no records"
        empty = LineProblem(path, 0, why)
        raise InputError([*problems, names(empty) if names is not None else empty])
    if rejected and rejected_path is not None:
        write_jsonl_atomic(rejected_path, rejected)
    return CheckedInput(
        path=path,
        model=model,
        context=context or {},
        key=key,
        convert=convert,
        n_valid=n_valid,
        rejected_lines=rejected_lines,
        problems=problems,
    )


def read_jsonl(path: str | Path, model: type[T], **kwargs: Any) -> list[T]:
    """All valid records of a (small) file, in order; raises InputError on any bad line."""
    return list(check_jsonl(path, model, **kwargs))


# ----------------------------------------------------------------------------- writing


def _dumps(obj: BaseModel | dict[str, Any], base_dir: Path | None) -> str:
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json", context={"base_dir": base_dir})
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Write to a temporary file beside `path`, then rename over it; on error `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_failed(path: Path, failed: list[dict[str, Any]]) -> Path | None:
    """List the model calls that failed after retries in `path` (the next run retries them), or
    remove the list once none failed: a stale one would name items that have since succeeded.
    Returns `path` when something failed."""
    if failed:
        write_jsonl_atomic(path, failed)
        return path
    path.unlink(missing_ok=True)
    return None


def write_jsonl_atomic(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write all records at once (temp file + rename); returns how many were written."""
    path = Path(path)
    base = path.resolve().parent
    n = 0
    with atomic_open(path) as fh:
        for rec in records:
            fh.write(_dumps(rec, base) + "\n")
            n += 1
    return n


def write_json_atomic(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2, default=str)
        fh.write("\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def content_hash(*parts: Any) -> str:
    """A stable hash of JSON-able values: what makes a finished record reusable on resume."""
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(
            json.dumps(part, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        )
        h.update(b"\x1e")
    return h.hexdigest()


INPUT_HASH = "input_hash"


def sibling(output_file: str | Path, suffix: str) -> Path:
    """A side file of an output file: `out.jsonl` + `.config.yaml` -> `out.config.yaml`.

    (Folder outputs - `pr eval`, `pr train` - keep their side files inside the folder.)
    """
    out = Path(output_file)
    return out.with_name((out.stem if out.suffix == ".jsonl" else out.name) + suffix)


def _keys_and_hashes(path: Path, key: str) -> Iterator[tuple[int, int, str, str | None]]:
    """(offset, length, key, input hash) of each whole line of a resumable output."""
    pos = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                return
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                obj = None
            if not isinstance(obj, dict) or key not in obj:
                raise InputError(
                    [
                        LineProblem(
                            path,
                            lineno,
                            f"existing output is not a JSONL record with {key!r}; "
                            "repair it or start again with --overwrite",
                        )
                    ]
                )
            h = obj.get(INPUT_HASH)
            yield pos, len(raw), str(obj[key]), h if isinstance(h, str) else None
            pos += len(raw)


class _IntSet:
    """A set of 64-bit ints in 8 bytes each (a sorted array): the resume index of 100k lines is ~2 MB,
    where Python sets or dicts of strings took ~50 MB."""

    def __init__(self, values: Iterable[int]):
        self._a = array("q", sorted(values))
        self.distinct = sum(1 for i, v in enumerate(self._a) if i == 0 or v != self._a[i - 1])

    def __contains__(self, value: int | None) -> bool:
        if value is None:  # a line without an input hash (an older prcli's): never reused
            return False
        i = bisect.bisect_left(self._a, value)
        return i < len(self._a) and self._a[i] == value


def _fingerprint(key: str, input_hash: str | None) -> int | None:
    """One 64-bit value for (key, input hash): a line is reusable when its fingerprint is wanted."""
    return None if input_hash is None else id_hash(f"{key}\x1e{input_hash}")


class ResumableJsonl:
    """An output appended one whole line at a time, resumed by key *and input*.

    Every record carries `input_hash`, a content hash of the input record and of the settings that
    shape it. A re-run reuses a finished record only when `reuse(key, hash)` finds one made from the
    same input; anything else is redone. `finish(order)` then rewrites the file to hold exactly the
    records of this run's input, in input order; records it leaves out (their input changed, or is
    no longer given) move to `<out>.stale.jsonl` rather than being lost, and are reused from there
    if the same input comes back.

    Opening repairs a file whose last line was cut by a kill (it is dropped). Each record is one
    `write()` of a complete line followed by a flush, so Ctrl-C never leaves half a line.
    """

    def __init__(self, path: str | Path, *, key: str = "id", overwrite: bool = False):
        self.path = Path(path)
        self.stale_path = sibling(self.path, ".stale.jsonl")
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = 0
        if overwrite:
            for p in (self.path, self.stale_path):
                p.unlink(missing_ok=True)
        ids, found = array("q"), array("q")  # of every finished line, in the output and the stale file
        for p in (self.path, self.stale_path):
            if p.exists():
                self._collect(p, ids, found)
        self._ids, self._found = _IntSet(ids), _IntSet(found)
        self._keep = array("q")  # fingerprints of the records this run settled on
        self.reused = 0
        self.redone = 0  # finished before, but not reusable: another input, or a failure to retry
        self.written = 0
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def _collect(self, path: Path, ids: array, found: array) -> None:
        good_end = 0
        for offset, length, k, h in _keys_and_hashes(path, self.key):
            ids.append(id_hash(k))
            fp = _fingerprint(k, h)
            if fp is not None:
                found.append(fp)
            good_end = offset + length
        size = path.stat().st_size
        if good_end < size:  # the tail of a write cut by a kill
            self.repaired_bytes += size - good_end
            with open(path, "r+b") as fh:
                fh.truncate(good_end)

    @property
    def n_found(self) -> int:
        """Keys with a finished record when the output was opened."""
        return self._ids.distinct

    def has(self, key: str) -> bool:
        return id_hash(key) in self._ids

    def reuse(self, key: str, input_hash: str) -> bool:
        """True (and the record is kept) when a finished record for `key` came from this input."""
        fp = _fingerprint(key, input_hash)
        if fp not in self._found:
            return False
        self._keep.append(fp)
        self.reused += 1
        return True

    def write(self, record: BaseModel | dict[str, Any], input_hash: str) -> None:
        if isinstance(record, BaseModel):
            record = record.model_dump(mode="json", context={"base_dir": self.path.resolve().parent})
        record = {**record, INPUT_HASH: input_hash}
        k = str(record[self.key])
        line = (_dumps(record, None) + "\n").encode("utf-8")
        self._fh.write(line)
        self._fh.flush()
        if self.has(k):  # callers write only what they could not reuse
            self.redone += 1
        self._keep.append(_fingerprint(k, input_hash))
        self.written += 1

    def finish(self, order: Callable[[], Iterable[str]]) -> None:
        """Leave exactly this run's records in the file, in the order of the keys `order()` yields
        (the input's, streamed again); move the rest to the stale file.

        The usual case - the file already is that - is one streaming read and no write.
        """
        self.close()
        keep = _IntSet(self._keep)
        if self._in_place(iter(order()), keep):
            return
        picked: dict[str, tuple[Path, int, int]] = {}
        left: dict[tuple[str, str | None], tuple[Path, int, int]] = {}
        for p in (self.stale_path, self.path):  # the main file last: its newer lines win
            if not p.exists():
                continue
            for offset, length, k, h in _keys_and_hashes(p, self.key):
                if _fingerprint(k, h) in keep:
                    old = picked.get(k)
                    if old is not None:
                        left[(k, h)] = old
                    picked[k] = (p, offset, length)
                else:
                    left[(k, h)] = (p, offset, length)
        target = [k for k in dict.fromkeys(order()) if k in picked]
        placed = set(target)
        target += [k for k in picked if k not in placed]
        sources = {p: open(p, "rb") for p in (self.path, self.stale_path) if p.exists()}  # noqa: SIM115
        try:  # both files are read through handles opened before either is replaced
            _copy_lines(self.path, [picked[k] for k in target], sources)
            if left:
                _copy_lines(self.stale_path, list(left.values()), sources)
            else:
                self.stale_path.unlink(missing_ok=True)
        finally:
            for fh in sources.values():
                fh.close()

    def _in_place(self, order: Iterator[str], keep: _IntSet) -> bool:
        """True if the output holds one line for each kept record, in `order`, and nothing else."""
        if not self.path.exists():
            return keep.distinct == 0
        n = 0
        for _, _, k, h in _keys_and_hashes(self.path, self.key):
            if _fingerprint(k, h) not in keep or not any(k == wanted for wanted in order):
                return False  # `any` advances `order` past `k`: a key out of order or repeated fails
            n += 1
        return n == keep.distinct

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> ResumableJsonl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy_lines(dst: Path, spans: list[tuple[Path, int, int]], sources: dict[Path, Any]) -> None:
    """Write the given (file, offset, length) lines, in order, atomically over `dst`."""
    with atomic_open(dst, "wb") as out:
        for src, offset, length in spans:
            fh = sources[src]
            fh.seek(offset)
            out.write(fh.read(length))
