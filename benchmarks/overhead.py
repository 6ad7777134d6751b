"""Per-step overhead of service_flow against hand-written Python and the original.

A linear flow of N trivial steps (N = 10, 100, 1,000 and 5,000): step i reads key
``k{i}`` and returns ``{"k{i+1}": value + 1}``.  Printed, in nanoseconds per step and as
a ratio to the floor measured in the same process and round (median, and the spread of
the ratio over the rounds, lowest to highest):

- floor: hand-written Python doing the same copy, lookups, calls and merges;
- ``flow(ctx)``: service_flow's plain call;
- ``flow.run(ctx)``: with a record per step, with structlog unconfigured, configured
  (filtering at INFO) without ``cache_logger_on_first_use``, and configured with it;
  then with debug events on (each step logged, rendered to /dev/null);
- ``await flow(ctx)`` on an all-async flow of 10 steps, against hand-written awaits;
- the original service-flow 0.3.1, installed with ``pip install --target`` into a
  temporary folder and run in a subprocess, since it shares our import name.

Then the cost of building a flow with ``>>`` and of ``flow.validate()`` at 1,000 and
10,000 steps, and the ratio of the two (10 when the cost is linear).

Run: ``python benchmarks/overhead.py [--rounds 15]``.  Quote the medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from _install import install_into

SIZES = (10, 100, 1000, 5000)
ORIGINAL_SIZES = (10, 100)
BUILD_SIZES = (1000, 10000)


def make_steps(n: int) -> list[Callable[..., dict[str, int]]]:
    """N distinct functions; step i takes ``k{i}`` (parameter names are the contract)."""
    namespace: dict[str, Any] = {}
    source = "\n".join(f"def s{i}(k{i}):\n    return {{'k{i + 1}': k{i} + 1}}" for i in range(n))
    exec(source, namespace)  # noqa: S102 - benchmark fixtures with distinct parameter names
    return [namespace[f"s{i}"] for i in range(n)]


def make_floor(steps: list[Callable[..., dict[str, int]]]) -> Callable[[dict[str, int]], dict[str, int]]:
    """What a person would write by hand: copy, then look up, call and merge, unrolled."""
    namespace: dict[str, Any] = {f"s{i}": step for i, step in enumerate(steps)}
    body = "\n".join(f"    ctx.update(s{i}(ctx['k{i}']))" for i in range(len(steps)))
    exec(f"def floor(inputs):\n    ctx = dict(inputs)\n{body}\n    return ctx", namespace)  # noqa: S102
    return namespace["floor"]  # type: ignore[no-any-return]


def make_timed_floor(steps: list[Callable[..., dict[str, int]]]) -> Callable[[dict[str, int]], list[float]]:
    """The floor, also keeping one ``time.perf_counter()`` reading per step: the least a
    record of each step's duration can cost, written by hand."""
    namespace: dict[str, Any] = {f"s{i}": step for i, step in enumerate(steps)}
    namespace["now"] = time.perf_counter
    body = "\n".join(f"    ctx.update(s{i}(ctx['k{i}']))\n    times.append(now())" for i in range(len(steps)))
    source = f"def timed(inputs):\n    ctx = dict(inputs)\n    times = [now()]\n{body}\n    return times"
    exec(source, namespace)  # noqa: S102 - benchmark fixtures
    return namespace["timed"]  # type: ignore[no-any-return]


def per_step_ns(call: Callable[[], object], n_steps: int, budget: float = 0.05) -> float:
    """Nanoseconds per step of *call*, over as many calls as fit in *budget* seconds."""
    loops = 1
    while True:
        started = time.perf_counter_ns()
        for _ in range(loops):
            call()
        elapsed = time.perf_counter_ns() - started
        if elapsed >= budget * 1e9:
            return elapsed / loops / n_steps
        loops *= 2


def measure(contenders: dict[str, Callable[[], object]], n: int, rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds: each round times every contender once, floor first."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, call in contenders.items():
            results[name].append(per_step_ns(call, n))
    return results


ORIGINAL_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import service_flow.middleware
from service_flow.flow import Flow
exec(sys.argv[2])  # defines make_steps, make_floor, per_step_ns, measure
out = {}
for n in json.loads(sys.argv[3]):
    steps = make_steps(n)
    floor = make_floor(steps)
    flow = Flow(steps[0])
    for step in steps[1:]:
        flow = flow >> step
    inputs = {"k0": 0}
    assert flow(dict(inputs)) == floor(inputs)
    out[n] = measure({"floor": lambda: floor(inputs), "original": lambda: flow(dict(inputs))}, n, int(sys.argv[4]))
print(json.dumps(out))
"""


def run_original(rounds: int) -> dict[int, dict[str, list[float]]] | str:
    """Measure service-flow 0.3.1 in a subprocess; a reason string when it cannot."""
    with tempfile.TemporaryDirectory() as target:
        failure = install_into(target, "service-flow==0.3.1", no_deps=True)
        if failure is not None:
            return failure
        helpers = _helper_source()
        done = subprocess.run(
            [sys.executable, "-c", ORIGINAL_SCRIPT, target, helpers, json.dumps(ORIGINAL_SIZES), str(rounds)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": target},
            cwd=target,
        )
        if done.returncode != 0:
            return f"the original failed to run: {done.stderr.strip()[-300:]}"
        return {int(n): value for n, value in json.loads(done.stdout).items()}


def _helper_source() -> str:
    import inspect

    return "\n".join(
        ["from typing import Any, Callable"]
        + [inspect.getsource(f) for f in (make_steps, make_floor, per_step_ns, measure)]
    )


def configure_structlog(mode: str) -> None:
    """Configure structlog as an application would: "unconfigured", "production", "uncached" or "debug"."""
    import structlog

    from service_flow import _log

    structlog.reset_defaults()
    # A logger structlog cached stays cached (its documented behaviour): start afresh.
    _log.PROXY = structlog.get_logger(_log.LOGGER_NAME)
    _log.cached = _log.debug_check = _log.debug_fixed = _log.quiet_class = None
    if mode == "unconfigured":
        return
    if mode == "debug":
        # Every debug event is rendered (to /dev/null, so that printing is not measured).
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))  # noqa: PTH123, SIM115
    else:
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=mode == "production",
        )


def row(n: int, name: str, times: list[float], floors: list[float]) -> None:
    """Print one contender: median ns/step, median ratio to the floor and its spread."""
    ratios = sorted(t / f for t, f in zip(times, floors))
    spread = f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
    print(f"{n:>5}  {name:<40}{statistics.median(times):>9.1f}{statistics.median(ratios):>9.2f}{spread:>12}")


def report_size(n: int, rounds: int, original: dict[int, dict[str, list[float]]] | str) -> None:
    """Measure and print one flow size."""
    from service_flow import Flow

    steps = make_steps(n)
    floor = make_floor(steps)
    flow = Flow(*steps)
    inputs = {"k0": 0}
    assert flow(inputs) == floor(inputs) == flow.run(inputs).context  # noqa: S101
    timed = make_timed_floor(steps)
    configure_structlog("production")
    results = measure(
        {"floor": lambda: floor(inputs), "call": lambda: flow(inputs), "timed": lambda: timed(inputs)}, n, rounds
    )
    row(n, "floor (hand-written)", results["floor"], results["floor"])
    row(n, "flow(ctx)", results["call"], results["floor"])
    row(n, "floor + a clock reading per step", results["timed"], results["floor"])
    modes = (
        ("unconfigured", "flow.run(ctx), structlog unconfigured"),
        ("uncached", "flow.run(ctx), configured, not cached"),
        ("production", "flow.run(ctx), configured and cached"),
        ("debug", "flow.run(ctx), debug events rendered"),
    )
    for mode, label in modes:
        if mode == "debug" and n > 100:  # logging 5,000 events per run says nothing new
            continue
        configure_structlog(mode)
        flow.run(inputs)  # let the logging decision settle, as it does after the first run
        other = measure({"floor": lambda: floor(inputs), "run": lambda: flow.run(inputs)}, n, rounds)
        row(n, label, other["run"], other["floor"])
    configure_structlog("production")
    if isinstance(original, dict) and n in original:
        row(n, "service-flow 0.3.1 (subprocess)", original[n]["original"], original[n]["floor"])
    elif isinstance(original, str) and n in ORIGINAL_SIZES:
        print(f"{n:>5}  {'service-flow 0.3.1':<40}  {original}")
    print()


def make_async_steps(n: int) -> list[Callable[..., Any]]:
    """N distinct ``async def`` steps, as make_steps."""
    namespace: dict[str, Any] = {}
    source = "\n".join(f"async def s{i}(k{i}):\n    return {{'k{i + 1}': k{i} + 1}}" for i in range(n))
    exec(source, namespace)  # noqa: S102 - benchmark fixtures
    return [namespace[f"s{i}"] for i in range(n)]


def make_async_floor(steps: list[Callable[..., Any]]) -> Callable[[dict[str, int]], Any]:
    """Hand-written awaits: copy, then look up, await and merge, unrolled."""
    namespace: dict[str, Any] = {f"s{i}": step for i, step in enumerate(steps)}
    body = "\n".join(f"    ctx.update(await s{i}(ctx['k{i}']))" for i in range(len(steps)))
    exec(f"async def floor(inputs):\n    ctx = dict(inputs)\n{body}\n    return ctx", namespace)  # noqa: S102
    return namespace["floor"]  # type: ignore[no-any-return]


def report_async(rounds: int, n: int = 10) -> None:
    """``await flow(ctx)`` against hand-written awaits, timed inside one event loop."""
    import asyncio

    from service_flow import Flow

    steps = make_async_steps(n)
    floor = make_async_floor(steps)
    flow = Flow(*steps)
    inputs = {"k0": 0}

    async def per_step(call: Callable[[], Any], budget: float = 0.05) -> float:
        loops = 1
        while True:
            started = time.perf_counter_ns()
            for _ in range(loops):
                await call()
            elapsed = time.perf_counter_ns() - started
            if elapsed >= budget * 1e9:
                return elapsed / loops / n
            loops *= 2

    async def main() -> tuple[list[float], list[float]]:
        assert await flow(inputs) == await floor(inputs)  # noqa: S101
        floors, flows = [], []
        for _ in range(rounds):
            floors.append(await per_step(lambda: floor(inputs)))
            flows.append(await per_step(lambda: flow(inputs)))
        return floors, flows

    floors, flows = asyncio.run(main())
    row(n, "hand-written awaits (async floor)", floors, floors)
    row(n, "await flow(ctx), all async", flows, floors)
    print()


def report_building(rounds: int) -> None:
    """Seconds to chain N steps with ``>>`` and to validate the flow, N = 1k and 10k.

    The garbage collector is off while timing, as ``timeit`` does: its passes over a heap
    that grows with N would otherwise add a cost that is not the library's.
    """
    import gc

    from service_flow import Flow

    timings: dict[str, dict[int, float]] = {"a >> b >> ... (chain)": {}, "flow.validate()": {}}
    for n in BUILD_SIZES:
        steps = make_steps(n)
        chains, checks = [], []
        for _ in range(max(3, rounds // 3)):
            gc.collect()
            gc.disable()
            started = time.perf_counter()
            flow = Flow(steps[0])
            for step in steps[1:]:
                flow = flow >> step
            flow.nodes  # noqa: B018 - the nodes are joined when first read
            chains.append(time.perf_counter() - started)
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # undeclared `provides`
                flow.validate(given={"k0"})
            checks.append(time.perf_counter() - started)
            gc.enable()
        timings["a >> b >> ... (chain)"][n] = statistics.median(chains)
        timings["flow.validate()"][n] = statistics.median(checks)
    small, large = BUILD_SIZES
    print(f"{'':<28}{small:>12,}{large:>12,}   ratio (10 = linear)")
    for name, by_size in timings.items():
        ratio = by_size[large] / by_size[small]
        print(f"{name:<28}{by_size[small] * 1e3:>10.2f}ms{by_size[large] * 1e3:>10.2f}ms{ratio:>9.1f}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved measurement rounds (default 15)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    configure_structlog("production")
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds, medians; ratio = time / floor in the same round\n")
    original = run_original(args.rounds)
    header = f"{'N':>5}  {'contender':<40}{'ns/step':>9}{'x floor':>9}{'spread':>12}"
    print(header)
    print("-" * len(header))
    for n in SIZES:
        report_size(n, args.rounds, original)
    report_async(args.rounds)
    report_building(args.rounds)
    print(
        "Goals: flow(ctx) <= 1.1x; flow.run(ctx) <= 1.5x at N = 10 and <= 1.3x at N = 100, whatever the\n"
        "structlog configuration; await flow(ctx) <= 1.15x; chaining and validate() linear (ratio ~10)."
    )


if __name__ == "__main__":
    main()
