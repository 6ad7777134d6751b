"""Throughput of the driver against a plain loop, threads for I/O, Dask for CPU.

Printed as ratios measured side by side in one process (interleaved rounds, medians):

1. 100,000 inputs through a 10-step trivial flow with one worker: ``Driver(flow).run``
   against ``for ctx in inputs: flow(ctx)``; peak RSS after 10,000 and after 100,000
   inputs read from a generator (flat memory means streaming).
1b. The same on a 3-step trivial flow, where the driver's own cost shows most
   (goal: the driver at most 1.1x the plain loop), with the ratios' spread.
2. An I/O-bound flow (each input sleeps 10 ms): 16 threads against 1 worker.
3. A CPU-bound flow on a Dask LocalCluster of 2 worker processes: speed-up over the
   inline driver, and the dispatch cost per input with batches of 1 and of 64.

Run: ``python benchmarks/driver.py [--rounds 7] [--skip-dask]``.  Quote the medians.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import structlog

from service_flow import Driver, Flow


def make_flow(n: int) -> Flow:
    namespace: dict[str, Any] = {}
    source = "\n".join(f"def s{i}(k{i}):\n    return {{'k{i + 1}': k{i} + 1}}" for i in range(n))
    exec(source, namespace)  # noqa: S102 - benchmark fixtures with distinct parameter names
    return Flow(*(namespace[f"s{i}"] for i in range(n)))


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def throughput(rounds: int, count: int, steps: int, number: str, goal: str) -> None:
    flow = make_flow(steps)
    inputs = [{"k0": i} for i in range(count)]

    def plain() -> None:
        for ctx in inputs:
            flow(ctx)

    def driven() -> None:
        report = Driver(flow).run(inputs)
        assert report.succeeded == count  # noqa: S101

    def driven_with_results() -> None:
        acked = collections.deque(maxlen=1)  # an ack that keeps nothing, like a queue's
        Driver(flow, on_result=acked.append).run(inputs)

    plain()  # compile the plan
    times: dict[str, list[float]] = {"plain": [], "driver": [], "driver+on_result": []}
    ratios: dict[str, list[float]] = {"driver": [], "driver+on_result": []}
    for _ in range(rounds):
        floor = timed(plain)
        times["plain"].append(floor)
        for name, call in (("driver", driven), ("driver+on_result", driven_with_results)):
            took = timed(call)
            times[name].append(took)
            ratios[name].append(took / floor)  # each ratio against the plain loop of its round
    floor = statistics.median(times["plain"])
    print(f"{number}. {count:,} inputs, {steps}-step trivial flow, 1 worker (median of {rounds} rounds; {goal})")
    for name, values in times.items():
        median = statistics.median(values)
        spread = ""
        if name in ratios:
            low, high = min(ratios[name]), max(ratios[name])
            spread = f"  (ratio median {statistics.median(ratios[name]):4.2f}x, range {low:4.2f}-{high:4.2f}x)"
        print(f"   {name:<18} {median * 1e3:8.1f} ms  {count / median:10,.0f}/s  {median / floor:5.2f}x{spread}")


def memory(n: int) -> None:
    """In a fresh process: peak RSS after driving ``n`` inputs from a generator."""
    flow = make_flow(10)
    before = rss_mb()
    report = Driver(flow).run({"k0": i, "payload": "x" * 200} for i in range(n))
    assert report.succeeded == n  # noqa: S101
    print(json.dumps({"before": before, "after": rss_mb()}))


def memory_table() -> None:
    marks = {}
    for n in (0, 10_000, 100_000, 1_000_000):
        out = subprocess.run(
            [sys.executable, __file__, "--memory", str(n)], capture_output=True, text=True, check=True
        ).stdout
        marks[n] = json.loads(out)["after"]
    print("   peak RSS of a fresh process (MB): " + ", ".join(f"{n:,} inputs {mb:.1f}" for n, mb in marks.items()))


def sleepy(n: int) -> dict[str, int]:
    time.sleep(0.01)
    return {"slept": n}


def io_bound(rounds: int) -> None:
    inputs = [{"n": i} for i in range(160)]
    one: list[float] = []
    sixteen: list[float] = []
    for _ in range(rounds):
        one.append(timed(lambda: Driver(sleepy).run(inputs)))
        sixteen.append(timed(lambda: Driver(sleepy, workers=16).run(inputs)))
    a, b = statistics.median(one), statistics.median(sixteen)
    print(f"2. I/O-bound flow (10 ms sleep per input, {len(inputs)} inputs)")
    print(f"   1 worker {len(inputs) / a:7.1f}/s   16 threads {len(inputs) / b:7.1f}/s   speed-up {a / b:5.1f}x")


def burn(n: int) -> dict[str, int]:
    total = 0
    for i in range(200_000):
        total += (i * n) % 7
    return {"total": total}


def trivial(n: int) -> dict[str, int]:
    return {"m": n + 1}


def dask(rounds: int) -> None:
    from distributed import Client, LocalCluster

    cpu_inputs = [{"n": i} for i in range(100)]
    small = [{"n": i} for i in range(2_000)]
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        executor = client.get_executor()
        Driver(burn, executor=executor, workers=2).run(cpu_inputs[:10])  # ship the flow once
        inline, spread, spread_auto = [], [], []
        per: dict[str, list[float]] = {"batch 1": [], "batch 64": [], "adaptive": []}
        sizes = {"batch 1": 1, "batch 64": 64, "adaptive": None}
        inline_small = []
        for _ in range(rounds):
            inline.append(timed(lambda: Driver(burn).run(cpu_inputs)))
            spread.append(timed(lambda: Driver(burn, executor=executor, workers=2, batch_size=4).run(cpu_inputs)))
            spread_auto.append(timed(lambda: Driver(burn, executor=executor, workers=2).run(cpu_inputs)))
            inline_small.append(timed(lambda: Driver(trivial).run(small)))
            for name, size in sizes.items():
                per[name].append(
                    timed(lambda size=size: Driver(trivial, executor=executor, workers=2, batch_size=size).run(small))
                )
    a = statistics.median(inline)
    base = statistics.median(inline_small)
    print(f"3. Dask LocalCluster, 2 worker processes, CPU-bound flow ({len(cpu_inputs)} inputs)")
    print(f"   inline {len(cpu_inputs) / a:7.1f}/s")
    for name, values in (("Dask, batch 4", spread), ("Dask, adaptive", spread_auto)):
        b = statistics.median(values)
        print(f"   {name:<15} {len(cpu_inputs) / b:7.1f}/s   speed-up {a / b:4.2f}x")
    for name, values in per.items():
        cost = (statistics.median(values) - base) / len(small) * 1e6
        print(f"   dispatch overhead per input, {name:<9}: {cost:8.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Production-like logging: INFO and up, loggers cached.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(20),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    if args.memory is not None:
        memory(args.memory)
        return
    print(f"Python {sys.version.split()[0]}")
    throughput(args.rounds, args.count, 10, "1", "the README quotes it")
    throughput(args.rounds, args.count, 3, "1b", "goal: driver <= 1.10x")
    memory_table()
    io_bound(max(3, args.rounds // 2))
    if not args.skip_dask:
        dask(max(3, args.rounds // 2))


if __name__ == "__main__":
    main()
