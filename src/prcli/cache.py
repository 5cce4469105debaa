"""A persistent, content-addressed result cache (SQLite, safe across threads and processes).

Keys are a SHA-256 of everything that determines a result (backend, model, prompt version,
inputs, decoding settings), so a repeated judgement costs no call and a changed prompt or model
never reuses a stale one. Only successful results are stored.

The cache only saves calls, so it never stops a run: on its first error (a file locked by another
node, corrupt, read-only or on a failing disk, as on a home folder shared across nodes) it warns
once and is bypassed for the rest of the run; results are then computed and not stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("prcli.cache")


def default_cache_dir() -> Path:
    env = os.environ.get("PRCLI_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prcli"


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResultCache:
    """`timeout`: seconds to wait for another process's write lock before the cache is bypassed."""

    def __init__(self, path: str | Path | None = None, *, timeout: float = 60.0):
        self.path = Path(path) if path is not None else default_cache_dir() / "results.sqlite"
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
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
        except (sqlite3.Error, OSError) as exc:
            self._bypass(exc)

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
        self._query(
            "INSERT OR REPLACE INTO results (key, value, created) VALUES (?, ?, ?)", (key, blob, time.time())
        )

    def __len__(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM results")
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
