"""The result cache's size limit, its upgrade of older files, and `pr cache info|clear`."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from typer.testing import CliRunner

from prcli.cache import ResultCache
from prcli.cli import app

runner = CliRunner()


def _fill(cache: ResultCache, n: int, width: int = 100) -> None:
    for i in range(n):
        cache.put(f"k{i:04d}", "x" * width)


def test_the_oldest_entries_go_when_the_cache_passes_its_limit(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite", max_bytes=20_000)
    for i in range(300):  # ~105 bytes each: 31 kB stored in all
        cache.put(f"k{i:04d}", "x" * 100)
        assert cache.stored_bytes() <= 20_000 * 1.05 + 105  # checked every 5% of the limit stored
    assert cache.evicted > 0
    kept = [i for i in range(300) if cache.get(f"k{i:04d}") is not None]
    assert kept == list(range(300 - len(kept), 300))  # exactly the newest survive
    assert cache.stored_bytes() >= 0.85 * 20_000  # evicted down to about 90% of the limit, not emptied


def test_a_run_that_stores_little_still_leaves_the_cache_under_its_limit(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResultCache(path, max_bytes=10_000_000)
    _fill(cache, 100, width=1000)  # 100 kB: less than one check's worth of a 10 MB limit
    cache.max_bytes = 50_000
    cache.close()
    assert ResultCache(path, max_bytes=None).stored_bytes() <= 50_000


def test_without_a_limit_nothing_is_evicted(tmp_path, monkeypatch):
    monkeypatch.setenv("PRCLI_CACHE_MAX_SIZE", "none")
    cache = ResultCache(tmp_path / "c.sqlite")
    _fill(cache, 300)
    assert len(cache) == 300 and cache.evicted == 0


def test_a_lowered_limit_applies_when_the_cache_opens(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    monkeypatch.setenv("PRCLI_CACHE_MAX_SIZE", "none")
    big = ResultCache(path)
    _fill(big, 100)
    big.close()
    monkeypatch.setenv("PRCLI_CACHE_MAX_SIZE", "5kB")
    small = ResultCache(path)
    assert small.stored_bytes() <= 5000 and small.get("k0099") == "x" * 100 and small.get("k0000") is None


def test_a_cache_from_before_the_limit_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
    conn.executemany(
        "INSERT INTO results VALUES (?, ?, ?)",
        [(f"k{i}", json.dumps("é" * 10), 1000.0 + i) for i in range(50)],
    )
    conn.commit()
    conn.close()
    cache = ResultCache(path, max_bytes=None)
    assert cache.get("k3") == "é" * 10  # old entries still answer
    assert cache.stored_bytes() == sum(len(f"k{i}") + len(json.dumps("é" * 10).encode()) for i in range(50))


def test_a_limit_that_is_not_a_size_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PRCLI_CACHE_MAX_SIZE", "lots")
    result = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "PRCLI_CACHE_MAX_SIZE='lots' is not a size" in result.output


def test_pr_cache_info_and_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("PRCLI_CACHE_MAX_SIZE", "1MB")
    cache = ResultCache(tmp_path / "results.sqlite")
    _fill(cache, 40, width=1000)
    cache.close()
    old = time.time() - 10 * 86400
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:  # the first 15 were stored ten days ago
        conn.execute("UPDATE results SET created = ? WHERE key < 'k0015'", (old,))

    result = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["entries"] == 40 and info["stored_bytes"] == 40 * (5 + 1002)
    assert info["limit_bytes"] == 1_000_000 and info["file_bytes"] >= info["stored_bytes"]
    assert info["oldest"] < info["newest"]

    result = runner.invoke(
        app, ["cache", "clear", "--cache-dir", str(tmp_path), "--older-than", "7", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["removed"] == 15
    left = ResultCache(tmp_path / "results.sqlite")
    assert len(left) == 25 and left.get("k0014") is None and left.get("k0015") is not None
    left.close()

    result = runner.invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path), "--json"])
    cleared = json.loads(result.stdout)
    assert cleared["removed"] == 25 and cleared["freed_bytes"] > 25 * 1000
    result = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path), "--json"])
    assert json.loads(result.stdout)["entries"] == 0


@pytest.mark.parametrize("command", ["info", "clear"])
def test_no_cache_yet_is_reported_not_created(tmp_path, command):
    result = runner.invoke(app, ["cache", command, "--cache-dir", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "none").exists()


def test_an_entry_larger_than_the_limit_is_not_stored_and_evicts_nothing(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite", max_bytes=10_000)
    _fill(cache, 40)
    cache.put("huge", "x" * 20_000)
    assert cache.get("huge") is None and len(cache) == 40 and cache.evicted == 0
