"""Judge throughput over several endpoints: 1, 2 and 4 replicas of fixed capacity, then one killed mid-run.

    python benchmarks/judge_endpoints.py [--latency 0.5] [--capacity 16] [--waves 12]

Each replica is the fake server in its own process (`prcli.testing.ServerProcess`): it answers after
`latency` seconds and serves at most `capacity` requests at once, so N replicas can serve at most
N x capacity / latency requests a second. A run sends waves x capacity x N judge requests through
one client (`--base-url` given N times) with 2 x capacity x N in flight, so the ideal time is the same
for every N; reported: requests per second, its ratio to one replica (goal: at least 0.9 x N) and
each replica's share. The last run has 2 replicas and kills one (SIGKILL) a third of the way in:
every request must still be answered, once.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from dataclasses import dataclass

from prcli.judge import JudgeConfig, JudgeItem, OpenAIJudge
from prcli.llm import LLMStats
from prcli.testing import ServerProcess

ANNOTATIONS = ["AB = 3 cm", "BC = 4 cm", "Angle ABC is a right angle", "D is the midpoint of AC"]


@dataclass
class Run:
    requests: int
    seconds: float
    answered: int
    stats: LLMStats
    shares: list[int]  # requests each replica got in the timed run


def run(replicas: int, args: argparse.Namespace, kill_after: float | None = None) -> Run:
    """Judge waves x capacity x replicas items; with `kill_after`, SIGKILL the last replica then."""
    n = args.waves * args.capacity * replicas
    items = [
        JudgeItem(f"r{i}", ANNOTATIONS, f"Response {i}: AB = 3 and BC = 4, so AC = 5.") for i in range(n)
    ]
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(ServerProcess(args.latency, args.capacity)) for _ in range(replicas)]
        judge = OpenAIJudge(
            JudgeConfig(
                backend="openai",
                base_url=[s.base_url for s in servers],
                model="fake",
                concurrency=2 * args.capacity * replicas,
                cache=False,
                structured="off",
                timeout=60,
            )
        )
        stats: LLMStats = judge.client.stats
        judge.judge_many_sync(items[: 2 * replicas])  # warm-up: imports, a connection to each replica
        before = [e.requests for e in stats.endpoints]
        if kill_after is not None:
            killer = threading.Timer(kill_after, servers[-1].kill)
            stack.callback(killer.cancel)
            killer.start()
        started = time.perf_counter()
        results = judge.judge_many_sync(items)
        elapsed = time.perf_counter() - started
    assert [r.id for r in results] == [it.id for it in items]  # one judgement per item, in order
    return Run(
        requests=n,
        seconds=elapsed,
        answered=sum(r.score == 1.0 for r in results),
        stats=stats,
        shares=[e.requests - b for e, b in zip(stats.endpoints, before, strict=True)],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument(
        "--waves", type=int, default=12, help="requests per replica, in units of its capacity"
    )
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    ideal = args.waves * args.latency
    print(
        f"latency {args.latency * 1000:.0f} ms, capacity {args.capacity} per replica, ideal time {ideal:.2f} s\n"
    )
    print(
        "| replicas | requests | client concurrency | time (s) | req/s | vs 1 replica | goal | share per replica |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base_rps = None
    for replicas in args.replicas:
        r = run(replicas, args)
        assert r.answered == r.requests, f"{r.requests - r.answered} judgement(s) failed"
        rps = r.requests / r.seconds
        base_rps = base_rps or rps / replicas  # the first run's throughput per replica
        print(
            f"| {replicas} | {r.requests} | {2 * args.capacity * replicas} | {r.seconds:.2f} | {rps:.1f} | "
            f"{rps / base_rps:.2f} | >= {0.9 * replicas:.1f} | {' / '.join(map(str, r.shares))} |"
        )

    kill_after = ideal / 3
    r = run(2, args, kill_after=kill_after)
    per_replica = args.capacity / args.latency  # requests a second
    ideal_killed = kill_after + (r.requests - 2 * per_replica * kill_after) / per_replica
    dead = r.stats.endpoints[-1]
    print(
        "\n| replicas | killed after (s) | requests | answered | failed | ideal (s) | time (s) | retries | "
        "killed replica: requests / failed attempts / times taken out |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| 2 | {kill_after:.1f} | {r.requests} | {r.answered} | {r.requests - r.answered} | {ideal_killed:.2f} | "
        f"{r.seconds:.2f} | {r.stats.retries} | {dead.requests} / {dead.failures} / {dead.taken_out} |"
    )


if __name__ == "__main__":
    main()
