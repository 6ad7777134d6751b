"""flow.run(): the Run record, its steps, key provenance, and the log events."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
import structlog

from service_flow import Flow, MissingContextKey, Retry, RunStatus, Service, StopFlow, service


class AddTax(Service):
    def __call__(self, subtotal: float) -> dict[str, float]:
        return {"total": subtotal * 1.5}


def validate(order_id: int) -> dict[str, bool]:
    if order_id < 0:
        raise StopFlow("invalid order")
    return {"valid": True}


def ship(total: float, address: str) -> dict[str, str]:
    return {"label": f"{address}:{total}"}


def busy() -> None:
    raise Retry("warehouse busy", delay=3)


orders = (Flow(validate) >> AddTax()).named("orders")


def test_a_successful_run_has_the_context_and_a_record_per_step() -> None:
    run = orders.run({"order_id": 1, "subtotal": 2.0})
    assert run.status is RunStatus.SUCCEEDED
    assert run.status == "succeeded"
    assert run.succeeded
    assert not run.stopped
    assert not run.failed
    assert (
        run.context
        == orders({"order_id": 1, "subtotal": 2.0})
        == {"order_id": 1, "subtotal": 2.0, "valid": True, "total": 3.0}
    )
    assert run.error is None
    assert [(r.position, r.name, r.status, r.keys, r.error) for r in run.steps] == [
        (0, "validate", "succeeded", ("valid",), None),
        (1, "AddTax", "succeeded", ("total",), None),
    ]
    assert all(r.duration >= 0 for r in run.steps)
    assert run.duration >= sum(r.duration for r in run.steps)
    assert run.flow == "orders"


def test_stop_flow_gives_a_stopped_run_not_an_exception() -> None:
    run = (orders >> ship).run({"order_id": -1})
    assert run.stopped
    assert run.reason == "invalid order"
    assert isinstance(run.error, StopFlow)
    assert run.error.step == "validate"
    assert [(r.name, r.status) for r in run.steps] == [("validate", "stopped")]
    assert run.context == {"order_id": -1}


def test_an_exception_gives_a_failed_run_with_the_error_and_the_failing_step() -> None:
    run = (orders >> busy).run({"order_id": 1, "subtotal": 1.0})
    assert run.failed
    assert isinstance(run.error, Retry)
    assert run.error.delay == 3
    assert run.error.step == "busy"
    assert run.failed_step is not None
    assert run.failed_step.name == "busy"
    assert run.failed_step.status is RunStatus.FAILED
    assert run.context["total"] == 1.5  # what was done before the failure is kept


def test_a_step_failing_midway_keeps_the_records_of_the_steps_before_it() -> None:
    run = (orders >> busy >> ship).run({"order_id": 1, "subtotal": 1.0})
    assert [(r.position, r.name, r.status, r.keys) for r in run.steps] == [
        (0, "validate", "succeeded", ("valid",)),
        (1, "AddTax", "succeeded", ("total",)),
        (2, "busy", "failed", ()),
    ]
    assert run.failed_step == run.steps[2]
    assert run.set_by("total") == "AddTax"
    assert all(r.duration >= 0 for r in run.steps)
    assert sum(r.duration for r in run.steps) <= run.duration


def test_a_result_that_cannot_be_merged_fails_its_step_after_the_records_before_it() -> None:
    async def later(total: float) -> dict[str, float]:
        return {"later": total}

    def sneaky(total: float) -> Any:  # a sync service returning a coroutine
        return later(total)

    run = (orders >> sneaky >> ship).run({"order_id": 1, "subtotal": 1.0})
    assert run.failed
    assert [(r.name, r.status) for r in run.steps] == [
        ("validate", "succeeded"),
        ("AddTax", "succeeded"),
        ("sneaky", "failed"),
    ]
    assert run.failed_step is not None
    assert run.failed_step.name == "sneaky"
    assert "returned an awaitable" in str(run.error)


def test_an_async_run_failing_midway_keeps_the_records_before_it() -> None:
    import asyncio

    async def fetch(total: float) -> dict[str, float]:
        return {"fetched": total}

    async def refuse(fetched: float) -> None:
        raise ValueError(fetched)

    run = asyncio.run((orders >> fetch >> refuse >> ship).arun({"order_id": 1, "subtotal": 2.0}))
    assert [(r.name, r.status, r.keys) for r in run.steps] == [
        ("validate", "succeeded", ("valid",)),
        ("AddTax", "succeeded", ("total",)),
        ("fetch", "succeeded", ("fetched",)),
        ("refuse", "failed", ()),
    ]
    assert run.set_by("fetched") == "fetch"


def test_keyboard_interrupt_is_not_swallowed() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Flow(interrupt).run({})


def test_records_know_which_step_set_each_key() -> None:
    bump = lambda total: {"total": total + 1, "note": "x"}  # noqa: E731 - a lambda service on purpose
    run = (orders >> bump).run({"order_id": 1, "subtotal": 2.0})
    assert run.set_by("total") == f"<lambda at test_run.py:{bump.__code__.co_firstlineno}>"
    assert run.set_by("valid") == "validate"
    assert run.set_by("order_id") is None


def test_a_missing_key_in_a_run_says_which_step_set_each_available_key() -> None:
    run = (orders >> ship).run({"order_id": 1, "subtotal": 2.0})
    assert run.failed
    assert isinstance(run.error, MissingContextKey)
    message = str(run.error)
    assert "ship needs 'address'" in message
    assert "order_id (given), subtotal (given), valid (set by validate), total (set by AddTax)" in message
    assert [(r.name, r.status) for r in run.steps][-1] == ("ship", "failed")


def test_run_ids_are_unique_and_repr_is_short() -> None:
    runs = [orders.run({"order_id": 1, "subtotal": 1.0}) for _ in range(3)]
    assert len({r.run_id for r in runs}) == 3
    assert repr(runs[0]).startswith(f"<Run {runs[0].run_id} of 'orders' succeeded in ")
    assert repr(runs[0]).endswith(" ms, 2 steps>")


def test_steps_of_forks_carry_their_branch() -> None:
    flow = Flow(validate) < ("kind", {"a": AddTax(), "b": None})
    run = flow.run({"order_id": 1, "kind": "a", "subtotal": 1.0})
    assert [(r.name, r.branch, r.position) for r in run.steps] == [("validate", "", 0), ("AddTax", "kind='a'", 2)]


# -- logging -------------------------------------------------------------------------


def test_a_traced_run_logs_start_each_step_and_end_with_its_ids(events: list[dict[str, Any]]) -> None:
    run = orders.run({"order_id": 1, "subtotal": 2.0})
    assert [e["event"] for e in events] == ["run.started", "step.succeeded", "step.succeeded", "run.succeeded"]
    assert {e["run_id"] for e in events} == {run.run_id}
    assert {e["flow"] for e in events} == {"orders"}
    assert all(e["log_level"] == "debug" for e in events)
    assert [e.get("step") for e in events[1:3]] == ["validate", "AddTax"]
    assert events[2]["keys"] == ["total"]
    assert all(e["duration_ms"] >= 0 for e in events[1:])


def test_a_traced_run_logs_each_step_as_it_ends(events: list[dict[str, Any]]) -> None:
    seen_by_ship: list[list[str]] = []

    def look(total: float) -> None:
        seen_by_ship.append([e.get("step", e["event"]) for e in events])

    (orders >> look).run({"order_id": 1, "subtotal": 2.0})
    assert seen_by_ship == [["run.started", "validate", "AddTax"]]


def test_stopped_and_failed_runs_are_logged_at_info_and_warning(events: list[dict[str, Any]]) -> None:
    (orders >> ship).run({"order_id": -1})
    (orders >> busy).run({"order_id": 1, "subtotal": 1.0})
    ends = [
        (e["event"], e["log_level"], e.get("step"))
        for e in events
        if e["event"].startswith("run.") and e["event"] != "run.started"
    ]
    assert ends == [("run.stopped", "info", "validate"), ("run.failed", "warning", "busy")]
    failed = next(e for e in events if e["event"] == "run.failed")
    assert failed["error"].startswith("Retry: warehouse busy")
    assert next(e for e in events if e["event"] == "step.failed")["step"] == "busy"


def test_context_values_never_reach_the_logs(events: list[dict[str, Any]]) -> None:
    def login(password: str, token: str) -> dict[str, str]:
        return {"session": f"s-{token}"}

    def explode(session: str) -> None:
        raise RuntimeError("backend down")

    Flow(login).run({"password": "hunter2", "token": "tok-123"})
    Flow(login, explode).run({"password": "hunter2", "token": "tok-123"})
    text = repr(events)
    assert "hunter2" not in text
    assert "tok-123" not in text
    assert "backend down" in text


def test_debug_events_are_skipped_when_the_app_filters_them(events: list[dict[str, Any]]) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    orders.run({"order_id": 1, "subtotal": 2.0})
    (orders >> busy).run({"order_id": 1, "subtotal": 1.0})
    assert [e["event"] for e in events] == ["run.failed"]


def test_a_plain_call_logs_nothing(events: list[dict[str, Any]]) -> None:
    orders({"order_id": 1, "subtotal": 2.0})
    assert events == []


def test_the_library_never_touches_stdlib_logging_configuration() -> None:
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    orders.run({"order_id": 1, "subtotal": 2.0})
    assert (root.level, list(root.handlers)) == before


def _ship_fails(total: float, address: str) -> None:
    raise ValueError("carrier rejected the parcel")


def test_a_failed_run_says_where_the_failing_steps_inputs_came_from(events: list[dict[str, Any]]) -> None:
    run = (orders >> _ship_fails).run({"order_id": 1, "subtotal": 2.0, "address": "Paris"})
    failed = next(e for e in events if e["event"] == "run.failed")
    assert failed["inputs"] == "total (set by AddTax), address (given)"
    assert failed["step"] == "_ship_fails"
    if sys.version_info >= (3, 11):
        assert run.error is not None
        assert run.error.__notes__ == [
            (
                "raised in step '_ship_fails' of flow 'validate >> AddTax >> _ship_fails'; "
                "its inputs: total (set by AddTax), address (given)"
            )
        ]


def test_unconfigured_structlog_prints_no_debug_lines_but_does_print_failures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    orders.run({"order_id": 1, "subtotal": 2.0})
    assert capsys.readouterr().out == ""
    (orders >> busy).run({"order_id": 1, "subtotal": 1.0})
    out = capsys.readouterr().out
    assert "run.failed" in out
    assert "run.started" not in out


def test_a_fork_value_is_named_in_the_error_but_never_logged(events: list[dict[str, Any]]) -> None:
    from service_flow import ForkError, fork_on

    run = fork_on("card_type", {"visa": AddTax()}).run({"card_type": "4111-1111 cvv 123"})
    assert isinstance(run.error, ForkError)
    assert "4111-1111 cvv 123" in str(run.error)
    assert "4111-1111" not in repr(events)
    failed = next(e for e in events if e["event"] == "run.failed")
    assert failed["error"].startswith("ForkError: the fork on 'card_type' has no branch for a value of type str")
    assert failed["step"] == "fork on card_type"
    assert run.failed_step is not None
    assert run.failed_step.name == "fork on card_type"


def test_internal_lookups_do_not_show_in_the_traceback_of_a_missing_key() -> None:
    with pytest.raises(MissingContextKey) as caught:
        orders({"order_id": 1})
    assert caught.value.__suppress_context__
    assert caught.value.__cause__ is None


# -- what a run pays for logging -------------------------------------------------------


class _CountingProxy:
    """Stands in for the library's structlog proxy, counting the loggers built."""

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy
        self.binds = 0

    def bind(self, **values: Any) -> Any:
        self.binds += 1
        return self.proxy.bind(**values)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> _CountingProxy:
    from service_flow import _log

    counting = _CountingProxy(structlog.get_logger(_log.LOGGER_NAME))
    monkeypatch.setattr(_log, "PROXY", counting)
    monkeypatch.setattr(_log, "quiet_class", None)
    return counting


def test_an_unconfigured_structlog_costs_a_run_no_logger(proxy: _CountingProxy) -> None:
    for _ in range(5):
        assert orders.run({"order_id": 1, "subtotal": 2.0}).succeeded
    assert proxy.binds == 0


@pytest.mark.parametrize("cache", [False, True], ids=["not cached", "cached"])
def test_a_configuration_filtering_debug_out_builds_a_logger_once_at_most(proxy: _CountingProxy, cache: bool) -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO), cache_logger_on_first_use=cache
    )
    for _ in range(5):
        run = orders.run({"order_id": 1, "subtotal": 2.0})
    assert proxy.binds <= 1
    assert [(r.name, r.status) for r in run.steps] == [("validate", "succeeded"), ("AddTax", "succeeded")]


def test_configuring_debug_on_after_runs_without_it_traces_the_next_run(events: list[dict[str, Any]]) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    orders.run({"order_id": 1, "subtotal": 2.0})
    assert events == []
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    orders.run({"order_id": 1, "subtotal": 2.0})
    assert [e["event"] for e in events] == ["run.started", "step.succeeded", "step.succeeded", "run.succeeded"]


def test_a_stdlib_logger_whose_level_changes_is_asked_each_run(caplog: pytest.LogCaptureFixture) -> None:
    structlog.configure(
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        processors=[structlog.stdlib.render_to_log_kwargs],
    )
    with caplog.at_level(logging.INFO, logger="service_flow"):
        orders.run({"order_id": 1, "subtotal": 2.0})
    assert [r.getMessage() for r in caplog.records] == []
    with caplog.at_level(logging.DEBUG, logger="service_flow"):
        orders.run({"order_id": 1, "subtotal": 2.0})
    assert caplog.records[0].getMessage() == "run.started"


def test_records_of_a_long_run_stay_right() -> None:
    steps = [service(lambda n: {"n": n + 1}, name=f"step{i}") for i in range(5000)]
    run = Flow(*steps).run({"n": 0})
    assert run.context["n"] == 5000
    assert len(run.steps) == 5000
    assert [r.position for r in run.steps] == list(range(5000))
    assert all(r.status is RunStatus.SUCCEEDED and r.keys == ("n",) and r.duration >= 0 for r in run.steps)
    assert sum(r.duration for r in run.steps) <= run.duration
    assert run.set_by("n") == "step4999"
