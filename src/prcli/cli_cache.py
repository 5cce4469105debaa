"""`pr cache info|clear`: look after the persistent result cache of LLM answers."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from prcli.cache import (
    MAX_SIZE_ENV,
    cache_info,
    clear_cache,
    default_cache_dir,
    default_cache_file,
    human_size,
)
from prcli.cli_common import JSON_HELP
from prcli.ui import console, handle_errors, print_json, table

cache_app = typer.Typer(
    help="The result cache of LLM answers (judge, annotator, eval answer-judge, diagnose): size, age, clearing.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="The cache folder the stages were given with --cache-dir (default: PRCLI_CACHE_DIR "
        "or ~/.cache/prcli).",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


@cache_app.command("info")
@handle_errors
def info_cmd(cache_dir: CacheDir = None, json_out: JsonOut = False) -> None:
    """Where the cache is, how many entries it holds, their size and age, and its size limit."""
    info = cache_info(default_cache_file(cache_dir))
    if json_out:
        print_json(asdict(info))
        return
    rows = [
        ("file", info.path + ("" if info.exists else " (none yet)")),
        ("entries", info.entries),
        ("entries' size", human_size(info.stored_bytes)),
        ("on disk", human_size(info.file_bytes)),
        (f"limit ({MAX_SIZE_ENV})", human_size(info.limit_bytes)),
        ("oldest entry", info.oldest or "-"),
        ("newest entry", info.newest or "-"),
        (
            "datasets read as input",
            f"{human_size(info.datasets_bytes)} in {default_cache_dir() / 'datasets'} (PRCLI_CACHE_DIR, whatever "
            "--cache-dir says; kept by clear: records point at their images)",
        ),
    ]
    console.print(table("result cache", ["", ""], rows))


@cache_app.command("clear")
@handle_errors
def clear_cmd(
    cache_dir: CacheDir = None,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than", min=0, help="Remove only the entries stored more than this many days ago."
        ),
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """Remove the cache's entries (all, or the old ones) and compact the file. Runs then redo those calls.
    The copies of datasets given as input stay: annotated records point at their images."""
    path = default_cache_file(cache_dir)
    removed, freed = clear_cache(path, older_than)
    if json_out:
        print_json({"path": str(path), "removed": removed, "freed_bytes": freed})
        return
    console.print(f"removed {removed} entries from [bold]{path}[/]; {human_size(freed)} freed on disk")
