"""Per-step overhead of service_flow against hand-written Python and the original.

A linear flow of N trivial steps (N = 10 and 100): step i reads key ``k{i}`` and returns
``{"k{i+1}": value + 1}``.  Printed, in nanoseconds per step and as a ratio to the
floor measured in the same process and round:

- floor: hand-written Python doing the same copy, lookups, calls and merges;
- ``flow(ctx)``: service_flow's plain call;
- ``flow.run(ctx)``: with a record per step, structlog configured as in production
  (filtering at INFO, loggers cached); then again with loggers not cached, and with
  debug events on (each step logged, rendered to /dev/null);
- the original service-flow 0.3.1, installed with ``pip install --target`` into a
  temporary folder and run in a subprocess, since it shares our import name.

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
from pathlib import Path
from typing import Any, Callable

from _install import install_into

SIZES = (10, 100)


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
            [sys.executable, "-c", ORIGINAL_SCRIPT, target, helpers, json.dumps(SIZES), str(rounds)],
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
    """Configure structlog as an application would: "production", "uncached" or "debug"."""
    import structlog

    from service_flow import _log

    structlog.reset_defaults()
    # A logger structlog cached stays cached (its documented behaviour): start afresh.
    _log.PROXY = structlog.get_logger(_log.LOGGER_NAME)
    _log.cached = _log.debug_check = _log.debug_fixed = None
    if mode == "debug":
        # Every debug event is rendered (to /dev/null, so that printing is not measured).
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))  # noqa: PTH123, SIM115
    else:
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=mode == "production",
        )


def report_size(n: int, rounds: int, original: dict[int, dict[str, list[float]]] | str) -> None:
    """Measure and print one flow size."""
    from service_flow import Flow

    steps = make_steps(n)
    floor = make_floor(steps)
    flow = Flow(*steps)
    inputs = {"k0": 0}
    assert flow(inputs) == floor(inputs) == flow.run(inputs).context  # noqa: S101
    contenders = {
        "floor (hand-written)": lambda: floor(inputs),
        "service_flow flow(ctx)": lambda: flow(inputs),
        "service_flow flow.run(ctx)": lambda: flow.run(inputs),
    }
    results = measure(contenders, n, rounds)
    rows = [(name, times, results["floor (hand-written)"]) for name, times in results.items()]
    for mode, label in (("uncached", "  run(ctx), loggers not cached"), ("debug", "  run(ctx), debug events rendered")):
        configure_structlog(mode)
        other = measure({"floor": lambda: floor(inputs), "run": lambda: flow.run(inputs)}, n, rounds)
        rows.append((label, other["run"], other["floor"]))
    configure_structlog("production")
    if not isinstance(original, str):
        rows.append(("service-flow 0.3.1 (subprocess)", original[n]["original"], original[n]["floor"]))
    for name, times, floors in rows:
        ratio = statistics.median(t / f for t, f in zip(times, floors))
        print(f"{n:>4}  {name:<34}{statistics.median(times):>9.1f}{ratio:>9.2f}")
    if isinstance(original, str):
        print(f"{n:>4}  {'service-flow 0.3.1':<34}  {original}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved measurement rounds (default 15)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    configure_structlog("production")
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds, medians; ratio = time / floor in the same round\n")
    original = run_original(args.rounds)
    header = f"{'N':>4}  {'contender':<34}{'ns/step':>9}{'x floor':>9}"
    print(header)
    print("-" * len(header))
    for n in SIZES:
        report_size(n, args.rounds, original)
    print("Goals: flow(ctx) <= 1.3x and flow.run(ctx) <= 2.0x the floor, at N = 10 and 100.")


if __name__ == "__main__":
    main()
