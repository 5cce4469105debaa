"""Shared fixtures: the tiny Qwen2.5-VL built once per session, small images made on the spot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from prcli.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2.5-vl", "qwen2.5-vl", seed=0)


def make_image(path: Path, color: str = "white", size: tuple[int, int] = (64, 64)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`transformers serve` with the tiny model on 127.0.0.1: a real OpenAI-compatible server."""
    import subprocess
    import sys

    from prcli.llm import wait_for_server

    port = free_port()
    hub_cache = tmp_path_factory.mktemp("hub-cache")
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cli = Path(sys.executable).parent / "transformers"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                str(cli),
                "serve",
                str(tiny_model_dir),
                "--device",
                "cpu",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        if not wait_for_server(base_url, timeout=180):
            proc.kill()
            raise RuntimeError(f"transformers serve did not start:\n{log.read_text()[-3000:]}")
        yield {"base_url": base_url, "model": str(tiny_model_dir), "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own result cache, never the user's."""
    monkeypatch.setenv("PRCLI_CACHE_DIR", str(tmp_path / ".prcli-cache"))


# `pr train` options for a run of a few seconds with the tiny model (2 prompts x 4 rollouts a step)
SMALL = [
    *("--prompts-per-step", "2", "--num-generations", "4", "--per-device-batch-size", "8"),
    *("--max-completion-length", "12", "--min-pixels", "3136", "--max-pixels", "12544", "--seed", "0"),
]


def annotated_set(folder: Path, n: int = 6, annotations: list[str] | None = None) -> Path:
    """`n` annotated rectangle problems with their images in `folder`, for `pr train`."""
    rows = []
    for i in range(n):
        make_image(folder / "img" / f"{i}.png", color=(30 * i, 120, 200), size=(56, 56))
        rows.append(
            {
                "id": f"p{i}",
                "question": f"<image>The rectangle has sides {i + 2} and 3. What is its area?",
                "images": [f"img/{i}.png"],
                "answer": str((i + 2) * 3),
                "annotations": annotations
                or [f"The rectangle has width {i + 2}", "The rectangle has height 3"],
            }
        )
    path = folder / "annotated.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
