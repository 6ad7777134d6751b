"""Around services: `Around`/`@around` with call_next, and the original DecoratorMiddleware."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from service_flow import Around, CallNext, Flow, StopFlow, around, fork_on
from service_flow.middleware import DecoratorMiddleware


def divide(a: float, b: float) -> dict[str, float]:
    return {"q": a / b}


def double(q: float) -> dict[str, float]:
    return {"q2": q * 2}


class Catch(Around):
    def __call__(self, call_next: CallNext) -> dict[str, str] | None:
        try:
            call_next()
        except ZeroDivisionError:
            return {"error": "divided by zero"}
        return None


class Handler(DecoratorMiddleware):
    def __call__(self, context: dict[str, Any]) -> dict[str, str] | None:
        try:
            self.app(context)
        except ZeroDivisionError:
            return {"error": "divided by zero"}
        return None


@pytest.mark.parametrize("wrapper", [Catch(), Handler()], ids=["Around", "DecoratorMiddleware"])
def test_an_around_service_wraps_every_step_after_it(wrapper: Any) -> None:
    flow = wrapper >> divide >> double
    assert flow({"a": 1, "b": 0}) == {"a": 1, "b": 0, "error": "divided by zero"}
    assert flow({"a": 4, "b": 2}) == {"a": 4, "b": 2, "q": 2.0, "q2": 4.0}


def test_what_an_around_service_returns_is_merged_after_the_rest() -> None:
    @around
    def stamp(call_next: CallNext, tag: str) -> dict[str, str]:
        seen = call_next()
        return {"tag": f"{tag} after {sorted(seen)}"}

    flow = stamp >> divide
    assert flow({"a": 1, "b": 2, "tag": "t"})["tag"] == "t after ['a', 'b', 'q', 'tag']"


def test_an_around_service_may_skip_the_rest() -> None:
    @around
    def closed(call_next: CallNext) -> dict[str, bool]:
        return {"skipped": True}

    assert (closed >> divide)({"a": 1, "b": 0}) == {"a": 1, "b": 0, "skipped": True}


def test_call_next_can_run_the_rest_on_another_context() -> None:
    @around
    def sandbox(context: dict[str, Any], call_next: CallNext) -> dict[str, Any]:
        trial = call_next({**context, "b": 1})
        return {"trial_q": trial["q"]}

    assert (sandbox >> divide)({"a": 3, "b": 0}) == {"a": 3, "b": 0, "trial_q": 3.0}


def test_an_around_service_needs_a_call_next_parameter() -> None:
    from service_flow import FlowDefinitionError

    class Broken(Around):
        def __call__(self, context: dict[str, Any]) -> None:
            return None

    with pytest.raises(FlowDefinitionError, match="must take a `call_next` parameter"):
        Flow(Broken())


def test_nested_around_services_wrap_in_order() -> None:
    calls: list[str] = []

    def tracer(label: str) -> Any:
        @around(name=label)
        def trace(call_next: CallNext) -> None:
            calls.append(f"enter {label}")
            call_next()
            calls.append(f"leave {label}")

        return trace

    flow = tracer("outer") >> divide >> tracer("inner") >> double
    flow({"a": 1, "b": 1})
    assert calls == ["enter outer", "enter inner", "leave inner", "leave outer"]
    assert [r.name for r in flow.run({"a": 1, "b": 1}).steps] == ["outer", "divide", "inner", "double"]


def test_around_inside_a_fork_branch_wraps_the_rest_of_that_branch_only() -> None:
    def done() -> dict[str, bool]:
        return {"done": True}

    flow = fork_on("mode", {"safe": Flow(Catch(), divide), "raw": divide}) >> done
    assert flow({"mode": "safe", "a": 1, "b": 0}) == {
        "mode": "safe",
        "a": 1,
        "b": 0,
        "error": "divided by zero",
        "done": True,
    }
    with pytest.raises(ZeroDivisionError):
        flow({"mode": "raw", "a": 1, "b": 0})


def test_a_sealed_sub_flow_keeps_its_around_service_to_itself() -> None:
    flow = Flow(divide) >> (Catch() >> double) >> (lambda q2: {"q3": q2 / 0})
    with pytest.raises(ZeroDivisionError):
        flow({"a": 1, "b": 1})


def test_decorator_middleware_app_can_be_set_by_hand_outside_a_flow() -> None:
    handler = Handler()
    assert handler.app is None

    def failing(context: dict[str, Any]) -> dict[str, Any]:
        raise ZeroDivisionError

    handler.app = failing
    assert handler({}) == {"error": "divided by zero"}


def test_one_decorator_middleware_serves_many_flows_and_threads_at_once() -> None:
    handler = Handler()
    barrier = threading.Barrier(8)

    def slow_divide(a: float, b: float) -> dict[str, float]:
        barrier.wait(timeout=5)  # every thread is inside the handler at the same time
        return {"q": a / b}

    flows = [handler >> slow_divide, handler >> slow_divide >> double]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: flows[n % 2]({"a": n, "b": n % 3}), range(8)))
    for n, result in enumerate(results):
        if n % 3 == 0:
            assert result["error"] == "divided by zero"
        else:
            assert result["q"] == n / (n % 3)
            assert ("q2" in result) == (n % 2 == 1)


def test_stop_flow_inside_the_rest_passes_through_an_around_service() -> None:
    def stop() -> None:
        raise StopFlow("enough")

    run = (Catch() >> stop >> divide).run({"a": 1, "b": 0})
    assert run.stopped
    assert run.reason == "enough"
    assert [(r.name, r.status) for r in run.steps] == [("Catch", "stopped"), ("stop", "stopped")]


def test_call_next_may_come_before_the_whole_context() -> None:
    @around
    def first(call_next: CallNext, context: dict[str, Any]) -> dict[str, int]:
        call_next()
        return {"keys": len(context)}

    class Second(Around):
        def __call__(self, call_next: CallNext, context: dict[str, Any]) -> None:
            context["seen"] = True
            call_next()

    assert (first >> Second() >> divide)({"a": 1, "b": 1}) == {"a": 1, "b": 1, "seen": True, "q": 1.0, "keys": 4}


def test_returning_call_next_sets_no_key_of_its_own() -> None:
    @around
    def passthrough(call_next: CallNext) -> dict[str, Any]:
        return call_next()

    run = (passthrough >> divide).run({"a": 1, "b": 2})
    assert run.set_by("q") == "divide"
    assert run.set_by("a") is None
    assert [r.keys for r in run.steps] == [(), ("q",)]


def test_an_error_translated_by_an_around_service_is_blamed_on_it() -> None:
    class Translate(Around):
        def __call__(self, call_next: CallNext) -> None:
            try:
                call_next()
            except ZeroDivisionError as error:
                raise ValueError("bad ratio") from error

    run = (Translate() >> divide).run({"a": 1, "b": 0})
    assert isinstance(run.error, ValueError)
    assert run.failed_step is not None
    assert run.failed_step.name == "Translate"


def test_a_run_whose_error_was_handled_has_no_failed_step() -> None:
    run = (Catch() >> divide).run({"a": 1, "b": 0})
    assert run.succeeded
    assert run.failed_step is None
    assert [(r.name, r.status) for r in run.steps] == [("Catch", "succeeded"), ("divide", "failed")]


def test_steps_an_around_service_never_ran_show_as_skipped_in_the_run() -> None:
    @around
    def closed(call_next: CallNext) -> dict[str, bool]:
        return {"skipped": True}

    def done() -> dict[str, bool]:
        return {"done": True}

    inner = Catch() >> double
    flow = closed >> divide >> fork_on("mode", {"x": double}) >> inner >> done
    run = flow.run({"a": 1, "b": 1, "mode": "x"})
    assert run.succeeded
    assert run.context == {"a": 1, "b": 1, "mode": "x", "skipped": True}
    assert [(r.name, r.status) for r in run.steps] == [
        ("closed", "succeeded"),
        ("divide", "skipped"),
        ("fork on mode", "skipped"),
        ("Catch", "skipped"),
        ("double", "skipped"),
        ("done", "skipped"),
    ]
    assert [r.keys for r in run.steps][:2] == [("skipped",), ()]
    assert all(r.duration == 0 for r in run.steps[1:])
    assert run.set_by("skipped") == "closed"


def test_a_decorator_middleware_that_never_calls_app_skips_the_rest_visibly() -> None:
    class Cached(DecoratorMiddleware):
        def __call__(self, context: dict[str, Any]) -> dict[str, float]:
            return {"q": 0.5}

    run = (Cached() >> divide >> double).run({"a": 1, "b": 1})
    assert run.succeeded
    assert [(r.name, r.status) for r in run.steps] == [
        ("Cached", "succeeded"),
        ("divide", "skipped"),
        ("double", "skipped"),
    ]


def test_an_around_service_that_calls_the_rest_twice_records_it_twice_with_durations() -> None:
    @around
    def twice(call_next: CallNext) -> None:
        call_next()
        call_next()

    run = (twice >> divide >> double).run({"a": 1, "b": 1})
    assert [(r.name, r.status) for r in run.steps] == [
        ("twice", "succeeded"),
        ("divide", "succeeded"),
        ("double", "succeeded"),
        ("divide", "succeeded"),
        ("double", "succeeded"),
    ]
    wrapper, *inner = run.steps
    assert wrapper.duration >= sum(r.duration for r in inner) > 0
    assert run.duration >= wrapper.duration


def test_an_around_service_retrying_a_failed_rest_records_both_attempts() -> None:
    attempts: list[float] = []

    def flaky(q: float) -> dict[str, float]:
        attempts.append(q)
        if len(attempts) == 1:
            raise ZeroDivisionError
        return {"q3": q}

    @around
    def again(call_next: CallNext) -> None:
        try:
            call_next()
        except ZeroDivisionError:
            call_next()

    run = (again >> divide >> double >> flaky >> double).run({"a": 1, "b": 1})
    assert run.succeeded
    assert [(r.name, r.status) for r in run.steps] == [
        ("again", "succeeded"),
        ("divide", "succeeded"),
        ("double", "succeeded"),
        ("flaky", "failed"),
        ("divide", "succeeded"),
        ("double", "succeeded"),
        ("flaky", "succeeded"),
        ("double", "succeeded"),
    ]
    assert run.failed_step is None
    assert run.set_by("q3") == "flaky"
    wrapper, *inner = run.steps
    assert wrapper.duration >= sum(r.duration for r in inner) >= 0


def test_skipped_steps_are_logged_as_such(events: list[dict[str, Any]]) -> None:
    @around
    def closed(call_next: CallNext) -> None:
        return None

    (closed >> divide).run({"a": 1, "b": 1})
    assert [(e["event"], e.get("step")) for e in events] == [
        ("run.started", None),
        ("step.skipped", "divide"),
        ("step.succeeded", "closed"),
        ("run.succeeded", None),
    ]


def test_an_async_around_service_that_never_awaits_the_rest_skips_it_visibly() -> None:
    import asyncio

    class Closed(Around):
        async def __call__(self, call_next: Any) -> None:
            return None

    async def slow(a: float) -> dict[str, float]:
        return {"q": a}

    run = asyncio.run((Closed() >> slow >> double).arun({"a": 1}))
    assert run.succeeded
    assert [(r.name, r.status) for r in run.steps] == [
        ("Closed", "succeeded"),
        ("slow", "skipped"),
        ("double", "skipped"),
    ]


def test_records_keep_the_order_steps_started_in_even_when_the_clock_stands_still(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import service_flow._plan
    import service_flow.flow

    monkeypatch.setattr(service_flow._plan, "now", lambda: 1.0)
    monkeypatch.setattr(service_flow.flow, "now", lambda: 1.0)
    outer = Catch()
    flow = Flow(divide) >> outer >> double >> Catch() >> (lambda q2: {"q3": q2})  # compiled with the still clock
    run = flow.run({"a": 1, "b": 1})
    assert [r.name for r in run.steps] == ["divide", "Catch", "double", "Catch", run.steps[-1].name]
    assert all(r.duration == 0 for r in run.steps)


@pytest.mark.parametrize("wrapper", [Catch(), Handler()], ids=["Around", "DecoratorMiddleware"])
def test_steps_after_an_exception_an_around_service_swallowed_show_as_skipped(wrapper: Any) -> None:
    def check(q2: float) -> dict[str, bool]:
        return {"checked": q2 > 0}

    flow = wrapper >> (lambda: None) >> divide >> double >> fork_on("q2", {1: check}) >> check
    run = flow.run({"a": 1, "b": 0})
    assert run.succeeded
    assert run.context["error"] == "divided by zero"
    assert [(r.name, r.status) for r in run.steps][1:] == [
        (run.steps[1].name, "succeeded"),
        ("divide", "failed"),
        ("double", "skipped"),
        ("fork on q2", "skipped"),
        ("check", "skipped"),
    ]
    assert run.steps[0].status == "succeeded"
    assert isinstance(run.steps[2].error, ZeroDivisionError)
    assert run.failed_step is None  # the run did not fail


def test_a_swallowed_exception_from_a_branch_skips_what_comes_after_the_fork() -> None:
    @around
    def inner(call_next: CallNext) -> None:
        call_next()

    flow = Catch() >> fork_on("mode", {"x": Flow(inner) >> divide >> double}) >> double
    run = flow.run({"a": 1, "b": 0, "mode": "x"})
    assert [(r.name, r.status) for r in run.steps] == [
        ("Catch", "succeeded"),
        ("inner", "failed"),
        ("divide", "failed"),
        ("double", "skipped"),  # after the fork it reached (inside, `inner` did not swallow it)
    ]


def test_an_around_service_that_retries_the_rest_after_a_failure_skips_nothing() -> None:
    @around
    def again(call_next: CallNext) -> None:
        try:
            call_next()
        except ZeroDivisionError:
            call_next({"a": 1, "b": 1})

    run = (again >> divide >> double).run({"a": 1, "b": 0})
    assert [(r.name, r.status) for r in run.steps] == [
        ("again", "succeeded"),
        ("divide", "failed"),
        ("divide", "succeeded"),
        ("double", "succeeded"),
    ]


def test_an_async_around_service_that_swallows_an_exception_shows_what_it_left_out() -> None:
    import asyncio

    class Swallow(Around):
        async def __call__(self, call_next: Any) -> dict[str, bool] | None:
            try:
                await call_next()
            except ZeroDivisionError:
                return {"swallowed": True}
            return None

    async def slow(a: float, b: float) -> dict[str, float]:
        return {"q": a / b}

    run = asyncio.run((Swallow() >> slow >> double).arun({"a": 1, "b": 0}))
    assert run.succeeded
    assert [(r.name, r.status) for r in run.steps] == [
        ("Swallow", "succeeded"),
        ("slow", "failed"),
        ("double", "skipped"),
    ]


def test_a_fork_error_an_around_service_swallowed_shows_the_fork_failed() -> None:
    class CatchAll(Around):
        def __call__(self, call_next: CallNext) -> dict[str, str] | None:
            try:
                call_next()
            except Exception as error:
                return {"caught": type(error).__name__}
            return None

    run = (CatchAll() >> divide >> fork_on("mode", {"x": double}) >> double).run({"a": 1, "b": 1, "mode": "y"})
    assert run.succeeded
    assert run.context["caught"] == "ForkError"
    assert [(r.name, r.status) for r in run.steps] == [
        ("CatchAll", "succeeded"),
        ("divide", "succeeded"),
        ("fork on mode", "failed"),
        ("double", "skipped"),
    ]
    assert type(run.steps[2].error).__name__ == "ForkError"
