"""What runs where the work is: batches of inputs on threads or in worker processes.

A batch stops at its first `Fatal`: the inputs after it come back unrun, and the driver
sends them again once the restart is done (so a broken processor does not burn them).

In another process (a process pool, Dask) everything crosses as bytes pickled one input
and one result at a time, so that an input or a result that cannot be pickled is that
input's dead letter alone, with an error saying so, instead of a batch that never comes
back.  The flow is unpickled once per process and kept, with its resources.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from service_flow import _log
from service_flow._ledger import fresh
from service_flow.exceptions import RemoteError
from service_flow.policy import ErrorKind, classify
from service_flow.resources import Resources

if TYPE_CHECKING:
    from service_flow.flow import Flow
    from service_flow.report import Input

__all__ = ["BatchSizer", "Raw", "decode", "encode_input", "run_local_batch", "run_remote_batch"]

Raw = tuple[Optional[ErrorKind], Any]
"""One attempt's outcome: ``(None, context)`` on success, else ``(kind, error)``."""

_REMOTE_FLOWS: dict[str, tuple[Flow, Resources]] = {}
_REMOTE_LOCK = threading.Lock()
_REMOTE_CACHE_SIZE = 8
# Adaptive batches (an executor without batch_size): the first size, the largest, and
# about how many seconds of work one batch may hold.
FIRST_BATCH = 8
MAX_BATCH = 1024
_BATCH_WORK = 1.0


def run_local_batch(
    flow: Flow,
    inputs: list[Input],
    retry_on: tuple[type[BaseException], ...],
    fatal_on: tuple[type[BaseException], ...],
) -> list[Raw]:
    """Run each input (a fresh copy of it) on a thread sharing the flow; stop at a `Fatal`."""
    out: list[Raw] = []
    for data in inputs:
        try:
            out.append((None, flow(fresh(data))))
        except Exception as error:  # noqa: BLE001, PERF203 - every error is an outcome
            kind = classify(error, retry_on=retry_on, fatal_on=fatal_on)
            out.append((kind, error))
            if kind is ErrorKind.FATAL:
                break  # the driver restarts, then sends the rest again
    return out


def encode_input(data: Input) -> bytes | BaseException:
    """The pickled input, or the error saying why it cannot travel."""
    try:
        return pickle.dumps(data)
    except Exception as error:  # noqa: BLE001 - the input's dead letter
        return RemoteError(
            f"the input cannot be pickled to a worker process: {_log.describe_error(error)}",
            error_type=_dotted(error),
        )


def run_remote_batch(
    token: str,
    flow_bytes: bytes,
    payloads: list[bytes],
    retry_on: tuple[type[BaseException], ...],
    fatal_on: tuple[type[BaseException], ...],
    restartable: list[bool],
    submission: int,  # noqa: ARG001 - unique per submission: Dask must never reuse a result
) -> tuple[list[tuple[Optional[ErrorKind], Any]], float]:
    """Run a batch in another process: the flow is unpickled once per process and kept.

    Keeping it keeps its resources (sessions, connections) open between batches; a
    `Fatal` restarts this process's copy of them (when the input's restart budget allows)
    and ends the batch.  Returns the outcomes, each context pickled, and the seconds the
    batch took here, which size the next batches.
    """
    with _REMOTE_LOCK:
        held = _REMOTE_FLOWS.get(token)
        if held is None:
            flow = pickle.loads(flow_bytes)  # noqa: S301 - sent by our own driver
            held = _REMOTE_FLOWS[token] = (flow, Resources.of(flow))
            while len(_REMOTE_FLOWS) > _REMOTE_CACHE_SIZE:
                del _REMOTE_FLOWS[next(iter(_REMOTE_FLOWS))]
    flow, resources = held
    started = time.perf_counter()
    out: list[tuple[ErrorKind | None, Any]] = []
    for payload, may_restart in zip(payloads, restartable):
        try:
            data = pickle.loads(payload)  # noqa: S301 - pickled by our own driver
        except Exception as error:  # noqa: BLE001 - this input's dead letter
            message = f"the input cannot be unpickled in the worker process: {_log.describe_error(error)}"
            out.append((ErrorKind.FAIL, RemoteError(message, error_type=_dotted(error))))
            continue
        try:
            context = flow(data)
        except Exception as error:  # noqa: BLE001 - every error is an outcome
            kind = classify(error, retry_on=retry_on, fatal_on=fatal_on)
            outcome = _portable(error)
            if kind is ErrorKind.FATAL:
                if may_restart:
                    try:
                        resources.restart()
                    except Exception as failure:  # noqa: BLE001 - reported with the input
                        outcome = _portable(failure)
                out.append((kind, outcome))
                break
            out.append((kind, outcome))
            continue
        try:
            out.append((None, pickle.dumps(context)))
        except Exception as error:  # noqa: BLE001 - this input's dead letter, not the batch's
            message = f"the result cannot be pickled back from the worker process: {_log.describe_error(error)}"
            out.append((ErrorKind.FAIL, RemoteError(message, error_type=_dotted(error), flow=flow.name)))
    return out, time.perf_counter() - started


def decode(kind: ErrorKind | None, value: Any) -> Raw:
    """A remote outcome as a local one: the context unpickled (or why it cannot be)."""
    if kind is not None:
        return kind, value
    try:
        return None, pickle.loads(value)  # noqa: S301 - pickled by our own worker
    except Exception as error:  # noqa: BLE001 - this input's dead letter
        message = f"the result from the worker process cannot be unpickled here: {_log.describe_error(error)}"
        return ErrorKind.FAIL, RemoteError(message, error_type=_dotted(error))


def _dotted(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"


def _portable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    except Exception:  # noqa: BLE001 - whatever fails to travel is replaced
        return RemoteError(
            f"{type(error).__name__}: {error}",
            error_type=_dotted(error),
            flow=getattr(error, "flow", None),
            step=getattr(error, "step", None),
        )
    return error


class BatchSizer:
    """How many inputs go in the next batch: fixed, or sized from how batches come back."""

    def __init__(self, batch_size: int | None, *, adaptive: bool) -> None:
        self.size = batch_size or (FIRST_BATCH if adaptive else 1)
        self.adaptive = adaptive

    def resize(self, size: int, worked: float, round_trip: float) -> None:
        """Size the next batches from how the last one went (an executor, ``batch_size=None``).

        Dispatch (the round trip less the work) should stay under a fifth of the work,
        and a batch should hold about a second of work at most, so that the last
        batches do not keep one worker busy while the others wait.
        """
        per_input = worked / size
        if per_input <= 0:
            wanted = MAX_BATCH
        else:
            dispatch = max(round_trip - worked, 0.0)
            wanted = max(1, math.ceil(round(5 * dispatch / per_input, 6)))  # no 50.000001 -> 51
            wanted = min(wanted, max(1, int(_BATCH_WORK / per_input)))
        self.size = max(1, min(wanted, self.size * 4, MAX_BATCH))
