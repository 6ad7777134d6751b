"""Helpers for testing services and flows without mocking service_flow's internals.

`call` (and `acall` for async services) calls one service with its parameters filled
from a context that may hold other keys, exactly as a flow would, and hands back what it
returned; given a flow, it hands back the keys the flow set or changed.

`stub` replaces steps of a flow by fakes for the length of a ``with`` block, without
rebuilding the flow; a `Recorder` is a fake that keeps what each call was given.

`assert_succeeded`, `assert_stopped` and `assert_failed` check how a `Run` ended (and
at which step); `assert_needs` and `assert_provides` check what a flow needs in its
input and guarantees in its output, with `validate` underneath.

`FakeClock` replaces the real clock wherever the library takes a ``clock=``: sleeping
advances its time instantly and every wait is recorded, so tests of retries, backoff,
polling and rate limits are fast and deterministic.

This module is a re-export list: each helper lives in a private module of its own.
"""

from __future__ import annotations

from service_flow.testing._assert import (
    assert_failed,
    assert_needs,
    assert_provides,
    assert_stopped,
    assert_succeeded,
)
from service_flow.testing._call import acall, call
from service_flow.testing._clock import FakeClock
from service_flow.testing._recorder import Recorder
from service_flow.testing._stub import stub

__all__ = [
    "FakeClock",
    "Recorder",
    "acall",
    "assert_failed",
    "assert_needs",
    "assert_provides",
    "assert_stopped",
    "assert_succeeded",
    "call",
    "stub",
]
