"""The pytest plugin (entry point ``pytest11``: ``service_flow``), run in pytest sessions of its own."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import service_flow.testing

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest import Pytester  # noqa: PT013 - the type, only for annotations

pytest_plugins = ["pytester"]


def test_the_fixtures_come_from_the_entry_point(pytester: Pytester) -> None:
    pytester.makepyfile(
        """
        def test_fixtures(fake_clock, log_events, run_flow):
            pass
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    disabled = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:service_flow")
    disabled.assert_outcomes(errors=1)
    disabled.stdout.fnmatch_lines(["*fixture 'fake_clock' not found*"])


def test_fake_clock_and_run_flow(pytester: Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        from service_flow import Flow, StopFlow
        from service_flow.testing import FakeClock, assert_stopped, assert_succeeded

        def price(quantity, clock):
            clock.sleep(2)
            if not quantity:
                raise StopFlow("empty cart")
            return {"total": quantity * 10}

        async def fetch(total):
            await asyncio.sleep(0)
            return {"fetched": total}

        def test_sync(fake_clock, run_flow):
            assert isinstance(fake_clock, FakeClock)
            run = run_flow(Flow(price), {"quantity": 2}, clock=fake_clock)
            assert_succeeded(run)
            assert run.context["total"] == 20
            assert fake_clock.sleeps == [2]
            assert_stopped(run_flow(price, {"quantity": 0, "clock": fake_clock}), at=price, reason="empty")

        def test_async(fake_clock, run_flow):
            run = run_flow(Flow(price) >> fetch, quantity=1, clock=fake_clock)
            assert run.context["fetched"] == 10

        def test_a_refused_input_is_a_failed_run(run_flow):
            assert run_flow(price, [1]).failed

        def test_async_inside_a_loop(run_flow):
            async def inside():
                run_flow(Flow(fetch), total=1)
            asyncio.run(inside())
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*run_flow cannot run the async flow 'fetch' inside a running event loop: `await flow.arun(context)` instead"]
    )


def test_log_events_captures_the_librarys_events(pytester: Pytester) -> None:
    pytester.makepyfile(
        """
        import structlog
        from service_flow import Flow

        def charge(total):
            raise ValueError("declined")

        def test_events(log_events):
            Flow(lambda n: {"total": n}).named("pay").run({"n": 1})
            (Flow(lambda n: {"total": n}) >> charge).named("checkout").run({"n": 1})
            assert [e["event"] for e in log_events if e.get("flow") == "pay"] == [
                "run.started", "step.succeeded", "run.succeeded"
            ]
            failed = [e for e in log_events if e["event"] == "run.failed"]
            assert failed[0]["step"] == "charge"
            assert failed[0]["error"] == "ValueError: declined"
            assert failed[0]["log_level"] == "warning"

        def test_structlog_is_left_as_it_was(log_events):
            pass

        def test_after():
            assert not structlog.is_configured()
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_mock_transport_fails_the_test_on_unexpected_requests(pytester: Pytester) -> None:
    # A stand-in with the agreed interface (``unexpected``): the fixture's own contract.
    pytester.makeconftest(
        """
        import pytest
        import service_flow.testing

        class StandIn:
            def __init__(self):
                self.unexpected = []

        @pytest.fixture(autouse=True)
        def _stand_in(monkeypatch):
            monkeypatch.setattr(service_flow.testing, "MockTransport", StandIn, raising=False)
        """
    )
    pytester.makepyfile(
        """
        def test_clean(mock_transport):
            assert mock_transport.unexpected == []

        def test_unexpected(mock_transport):
            mock_transport.unexpected.append("<SentRequest GET https://api.test/items?token=***>")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_unexpected*",
            "*the mock transport got 1 unexpected request(s):",
            "*  - '<SentRequest GET https://api.test/items?token=***>'",
        ]
    )


@pytest.mark.skipif(
    not hasattr(service_flow.testing, "MockTransport"), reason="service_flow.testing.MockTransport is not built yet"
)
def test_mock_transport_is_the_librarys(pytester: Pytester) -> None:
    pytester.makepyfile(
        """
        from service_flow.testing import MockTransport

        def test_it(mock_transport):
            assert isinstance(mock_transport, MockTransport)
            assert list(mock_transport.unexpected) == []
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_readme_example_runs(pytester: Pytester, readme_code: Callable[[str], str]) -> None:
    pytester.makepyfile(readme_code("The pytest plugin"))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_importing_the_plugin_is_cheap() -> None:
    # pytest imports it in every session: nothing beyond the package itself.
    code = (
        "import sys, pytest, service_flow.testing; before = set(sys.modules); "
        "import service_flow.testing.pytest_plugin; "
        "print(sorted(set(sys.modules) - before))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['service_flow.testing.pytest_plugin']"
