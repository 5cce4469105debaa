"""Judge-client throughput: prcli's async judge vs a sequential client, against a server of fixed latency.

    python benchmarks/judge_client.py [--n 2000] [--latency 0.2] [--capacity 32]

The server (`python -m prcli.testing`, its own process) answers every request after `latency` seconds
and serves at most `capacity` at once, so the best any client can do is ceil(n / capacity) x latency.
Reported: prcli's time against that ideal (efficiency = ideal / achieved), the client's CPU time per
request, and a sequential client (one request at a time, the openai SDK) on a subset, as the baseline.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

from prcli.judge import JudgeConfig, JudgeItem, OpenAIJudge
from prcli.judge.prompt import build_messages
from prcli.testing import ServerProcess

ANNOTATIONS = ["AB = 3 cm", "BC = 4 cm", "Angle ABC is a right angle", "D is the midpoint of AC"]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--capacity", type=int, default=32)
    parser.add_argument("--sequential-n", type=int, default=60)
    parser.add_argument(
        "--concurrency", type=int, default=0, help="client requests in flight (0: twice the capacity)"
    )
    args = parser.parse_args()

    with ServerProcess(args.latency, args.capacity) as srv:
        items = [
            JudgeItem(f"r{i}", ANNOTATIONS, f"Response {i}: AB = 3 and BC = 4, so AC = 5.")
            for i in range(args.n)
        ]
        judge = OpenAIJudge(
            JudgeConfig(
                backend="openai",
                base_url=srv.base_url,
                model="fake",
                concurrency=args.concurrency or 2 * args.capacity,
                cache=False,
                structured="off",
                timeout=60,
            )
        )
        judge.judge_many_sync(items[:8])  # warm-up: connections, imports
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        results = judge.judge_many_sync(items)
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        assert all(r.score == 1.0 for r in results), "every judgement should succeed"
        ideal = math.ceil(args.n / args.capacity) * args.latency

        from openai import OpenAI

        client = OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        t1 = time.perf_counter()
        for item in items[: args.sequential_n]:
            client.chat.completions.create(
                model="fake", messages=build_messages(item.annotations, item.response)
            )
        seq_elapsed = time.perf_counter() - t1

    ours_rps, seq_rps = args.n / elapsed, args.sequential_n / seq_elapsed
    print(
        "| requests | latency | capacity | ideal (s) | prcli (s) | efficiency (ideal/achieved) | client CPU per request | "
        "sequential req/s | prcli req/s | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.n} | {args.latency * 1000:.0f} ms | {args.capacity} | {ideal:.2f} | {elapsed:.2f} | "
        f"{ideal / elapsed:.3f} | {1000 * cpu / args.n:.2f} ms | {seq_rps:.1f} | {ours_rps:.1f} | {ours_rps / seq_rps:.1f}x |"
    )


if __name__ == "__main__":
    main()
