"""The pytest plugin of service_flow: fixtures to test services and flows.

pytest loads it in every session of an environment where service_flow is installed
(the ``pytest11`` entry point ``service_flow``), so it imports nothing beyond what its
package needs until a fixture is used.  The fixtures:

- ``fake_clock``: a `FakeClock`, for the ``clock=`` of retries, polling and limits;
- ``mock_transport``: a `MockTransport`; a request it did not expect fails the test
  at teardown, even if the flow caught the error;
- ``log_events``: the structlog events emitted during the test, as dicts (debug
  events included unless the application's configuration filters them);
- ``run_flow``: ``run_flow(flow, context, **keys)`` runs a flow (or one service) and
  returns its `Run`; an async flow is run in a new event loop.

Disable it with ``-p no:service_flow``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, MutableMapping

    from service_flow.run import Run
    from service_flow.testing import FakeClock

__all__ = ["fake_clock", "log_events", "mock_transport", "run_flow"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A `FakeClock` at time 0: pass it as ``clock=``; sleeping on it advances it at once."""
    from service_flow.testing import FakeClock

    return FakeClock()


@pytest.fixture
def mock_transport() -> Iterator[Any]:
    """A `service_flow.testing.MockTransport`; unexpected requests fail the test at teardown."""
    from service_flow import testing

    transport_class = getattr(testing, "MockTransport", None)
    if transport_class is None:
        pytest.fail(
            "the mock_transport fixture needs service_flow.testing.MockTransport, "
            "which this version of service_flow does not have",
            pytrace=False,
        )
    transport = transport_class()
    yield transport
    unexpected = list(transport.unexpected)
    if unexpected:
        shown = "\n".join(f"  - {request!r}" for request in unexpected)
        pytest.fail(f"the mock transport got {len(unexpected)} unexpected request(s):\n{shown}", pytrace=False)


@pytest.fixture
def log_events() -> Iterator[list[MutableMapping[str, Any]]]:
    """The structlog events emitted during the test, each a dict (``event``, ``log_level``...)."""
    import structlog
    from structlog.testing import capture_logs

    configured = structlog.is_configured()
    with capture_logs() as events:
        yield events
    if not configured:  # capture_logs leaves structlog configured: the library would log debug events
        structlog.reset_defaults()


def _run_flow(flow: Any, context: Mapping[str, Any] | None = None, /, **keys: Any) -> Run:
    """Run *flow* (or one service) on *context* plus *keys* and return its `Run`."""
    import asyncio

    from service_flow.flow import Flow

    runnable = flow if isinstance(flow, Flow) else Flow(flow)
    given: Any = context
    if keys:
        given = {**(context or {}), **keys}
    if not runnable.is_async:
        return runnable.run(given)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(runnable.arun(given))
    pytest.fail(
        f"run_flow cannot run the async flow {runnable.name!r} inside a running event loop: "
        "`await flow.arun(context)` instead",
        pytrace=False,
    )


@pytest.fixture
def run_flow() -> Callable[..., Run]:
    """``run_flow(flow, context, **keys)``: the `Run` of *flow* (sync or async) on *context* plus *keys*."""
    return _run_flow
