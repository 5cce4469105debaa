"""A persistent, content-addressed result cache (SQLite, safe across threads and processes).

Keys are a SHA-256 of everything that determines a result (backend, model, prompt version,
inputs, decoding settings), so a repeated judgement costs no call and a changed prompt or model
never reuses a stale one. Only successful results are stored.

The cache only saves calls, so it never stops a run: on its first error (a file locked by another
node, corrupt, read-only or on a failing disk, as on a home folder shared across nodes) it warns
once and is bypassed for the rest of the run; results are then computed and not stored.

The cache is bounded: when its entries pass `PRCLI_CACHE_MAX_SIZE` (default 2GiB; `none` for no
limit) the oldest stored entries are evicted, first in, first out, down to 90% of the limit (checked on
opening, closing, and every 5% of the limit or 256 entries stored). The limit counts the entries' bytes (key and value); the file is larger by SQLite's own overhead until
`pr cache clear` compacts it. `pr cache info|clear` look after it by hand.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ByteSize, TypeAdapter, ValidationError

from prcli.errors import StageError

log = logging.getLogger("prcli.cache")


def default_cache_dir() -> Path:
    env = os.environ.get("PRCLI_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prcli"


MAX_SIZE_ENV = "PRCLI_CACHE_MAX_SIZE"
DEFAULT_MAX_SIZE = "2GiB"
_UNLIMITED = ("none", "unlimited", "0")
_EVICT_TO = 0.9  # of the limit, so that eviction does not run again on the next store
_CHECK_EVERY = 256  # stores between two size checks, at most ...
_CHECK_SHARE = 0.05  # ... or this share of the limit stored since the last check


def default_cache_file(cache_dir: str | Path | None = None) -> Path:
    return (
        Path(cache_dir) / "results.sqlite"
        if cache_dir is not None
        else default_cache_dir() / "results.sqlite"
    )


def max_cache_bytes() -> int | None:
    """The size limit from the environment; a value that is not a size is an error, not ignored."""
    raw = os.environ.get(MAX_SIZE_ENV, DEFAULT_MAX_SIZE).strip()
    if raw.lower() in _UNLIMITED:
        return None
    try:
        return int(TypeAdapter(ByteSize).validate_python(raw))
    except ValidationError:
        raise StageError(
            f"{MAX_SIZE_ENV}={raw!r} is not a size: give e.g. 500MB, 2GiB, or none for no limit"
        ) from None


def human_size(n: int | None) -> str:
    return "no limit" if n is None else ByteSize(n).human_readable(separator=" ")


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResultCache:
    """`timeout`: seconds to wait for another process's write lock before the cache is bypassed."""

    def __init__(
        self, path: str | Path | None = None, *, timeout: float = 60.0, max_bytes: int | str | None = "env"
    ):
        self.path = Path(path) if path is not None else default_cache_file()
        self.max_bytes = max_cache_bytes() if max_bytes == "env" else max_bytes
        self.evicted = 0
        self._stores = 0
        self._unchecked = 0  # bytes stored since the last size check
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0
        self.error: str | None = None  # why the cache is bypassed
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=timeout, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            _create_schema(self._conn)
        except (sqlite3.Error, OSError) as exc:
            self._bypass(exc)
        self.enforce_limit()

    def _bypass(self, exc: Exception) -> None:
        """Stop using the cache after its first error, saying so once."""
        self.error = f"{type(exc).__name__}: {exc}"
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        log.warning(
            "result cache %s failed (%s); going on without it for the rest of this run "
            "(results are computed, not reused or stored)",
            self.path,
            self.error,
        )

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any] | None:
        """The rows of `sql`, or None once the cache is bypassed."""
        with self._lock:
            if self._conn is None:
                return None
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                self._bypass(exc)
                return None

    def get(self, key: str) -> Any | None:
        rows = self._query("SELECT value FROM results WHERE key = ?", (key,))
        if not rows:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(rows[0][0])

    def put(self, key: str, value: Any) -> None:
        blob = json.dumps(value, ensure_ascii=False)
        size = len(key) + len(blob.encode("utf-8"))
        if self.max_bytes is not None and size > self.max_bytes * _EVICT_TO:
            return  # it would evict everything else, itself included: not stored
        self._query(
            "INSERT OR REPLACE INTO results (key, value, created, size) VALUES (?, ?, ?, ?)",
            (key, blob, time.time(), size),
        )
        with self._lock:
            self._stores += 1
            self._unchecked += size
            due = self._stores % _CHECK_EVERY == 0 or (
                self.max_bytes is not None and self._unchecked > self.max_bytes * _CHECK_SHARE
            )
        if due:
            self.enforce_limit()

    def stored_bytes(self) -> int:
        rows = self._query("SELECT COALESCE(SUM(size), 0) FROM results")
        return int(rows[0][0]) if rows else 0

    def enforce_limit(self) -> int:
        """Evict the oldest entries while the entries pass the limit; the number evicted."""
        with self._lock:
            self._unchecked = 0
        if self.max_bytes is None:
            return 0
        stored = self.stored_bytes()
        if stored <= self.max_bytes:
            return 0
        excess = stored - int(self.max_bytes * _EVICT_TO)
        # How many of the oldest entries add up to the excess: those with less than it stored before them.
        rows = self._query(
            "SELECT COUNT(*) FROM (SELECT COALESCE(SUM(size) OVER (ORDER BY created, key ROWS BETWEEN "
            "UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before FROM results) WHERE before < ?",
            (excess,),
        )
        n = int(rows[0][0]) if rows else 0
        self._query(
            "DELETE FROM results WHERE key IN (SELECT key FROM results ORDER BY created, key LIMIT ?)", (n,)
        )
        self.evicted += n
        log.info(
            "result cache %s passed its limit (%s): evicted the %d oldest entries",
            self.path,
            human_size(self.max_bytes),
            n,
        )
        return n

    def __len__(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM results")
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        self.enforce_limit()  # a run that stored less than a check's worth still leaves the cache bounded
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None


def _create_schema(conn: sqlite3.Connection) -> None:
    """The table, and the `size` column and age index that caches made before the limit lack."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL, "
        "size INTEGER NOT NULL DEFAULT 0)"
    )
    columns = {row[1] for row in conn.execute("PRAGMA table_info(results)")}
    if "size" not in columns:
        try:
            conn.execute("ALTER TABLE results ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise
    conn.execute("UPDATE results SET size = length(key) + length(CAST(value AS BLOB)) WHERE size = 0")
    conn.execute("CREATE INDEX IF NOT EXISTS results_age ON results (created, key, size)")


# ----------------------------------------------------------------------------- pr cache info | clear


@dataclass
class CacheInfo:
    path: str
    exists: bool
    entries: int
    stored_bytes: int  # the entries' keys and values
    file_bytes: int  # on disk, with SQLite's overhead and the write-ahead log
    limit_bytes: int | None
    oldest: str | None  # ISO time of the oldest and newest stored entry
    newest: str | None
    datasets_bytes: int = 0  # datasets read by the stages, written out as JSONL and images (sources.py)


def _iso(ts: float | None) -> str | None:
    return (
        None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")
    )


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def _open_existing(path: Path) -> sqlite3.Connection:
    """The cache at `path` for upkeep; any failure is the user's error to see (not a bypass)."""
    try:
        conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        _create_schema(conn)
        return conn
    except sqlite3.Error as exc:
        raise StageError(f"cannot open the result cache {path}: {exc}") from None


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def cache_info(path: Path) -> CacheInfo:
    limit = max_cache_bytes()
    datasets = _folder_bytes(default_cache_dir() / "datasets")
    if not path.exists():
        return CacheInfo(str(path), False, 0, 0, 0, limit, None, None, datasets)
    conn = _open_existing(path)
    try:
        entries, stored, oldest, newest = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created), MAX(created) FROM results"
        ).fetchone()
    finally:
        conn.close()
    return CacheInfo(
        str(path), True, entries, stored, _file_bytes(path), limit, _iso(oldest), _iso(newest), datasets
    )


def clear_cache(path: Path, older_than_days: float | None = None) -> tuple[int, int]:
    """Remove every entry (or those stored more than `older_than_days` ago) and compact the file:
    (entries removed, bytes freed on disk)."""
    if not path.exists():
        return 0, 0
    before = _file_bytes(path)
    conn = _open_existing(path)
    try:
        if older_than_days is None:
            removed = conn.execute("DELETE FROM results").rowcount
        else:
            cutoff = time.time() - older_than_days * 86400
            removed = conn.execute("DELETE FROM results WHERE created < ?", (cutoff,)).rowcount
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise StageError(f"cannot clear the result cache {path} (is a run using it?): {exc}") from None
    finally:
        conn.close()
    return removed, max(0, before - _file_bytes(path))
