"""Answers: every outcome of a run mapped to the HTTP answer an endpoint sends."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import pytest

from service_flow import ConfigurationError, Flow, InvalidInput, Retry, StopFlow, service
from service_flow.web import Answer, Answers, answer

if TYPE_CHECKING:
    from collections.abc import Callable

    from service_flow.run import Run


@service(provides=("order_id", "card"))
def place(quantity: int, payment: str = "card") -> dict[str, Any]:
    if quantity > 10:
        raise StopFlow("only 10 left in stock")
    if quantity < 1:
        raise InvalidInput("quantity must be at least 1", key="quantity")
    return {"order_id": 7, "card": "4111 1111 1111 1111"}


def busy(order_id: int) -> None:
    raise Retry("payment provider busy", delay=2.5)


def crash(order_id: int) -> None:
    raise RuntimeError("db password=hunter2 rejected")


checkout = Flow(place).named("checkout")


def test_a_success_answers_200_with_the_chosen_keys_only() -> None:
    got = answer(checkout.run({"quantity": 2}), keys=("order_id",))
    assert got == Answer(200, {"order_id": 7}, {})
    assert "card" not in json.dumps(got.body)


def test_a_stopped_run_answers_409_with_its_reason_and_run_id() -> None:
    run = checkout.run({"quantity": 11})
    got = answer(run)
    assert got.status == 409
    assert got.body == {"error": "stopped", "reason": "only 10 left in stock", "run_id": run.run_id}


@pytest.mark.parametrize(
    ("given", "field"),
    [({"quantity": 0}, "quantity"), ({}, "quantity"), ([1, 2], None)],
)
def test_bad_input_answers_422_naming_the_field(given: Any, field: str | None) -> None:
    got = answer(checkout.run(given))
    assert got.status == 422
    assert got.body["error"] == "invalid input"
    assert got.body["field"] == field
    json.dumps(got.body)  # a body any framework can send


def test_an_unknown_fork_value_answers_422_listing_the_allowed_values() -> None:
    flow = Flow(place) < ("payment", {"card": Flow(lambda: None), "cash": Flow(lambda: None)})
    got = answer(flow.run({"quantity": 1, "payment": "bitcoin"}))
    assert got.status == 422
    assert got.body["field"] == "payment"
    assert got.body["allowed"] == ["card", "cash"]
    assert "bitcoin" not in json.dumps(got.body)


def test_retry_answers_503_with_retry_after_in_whole_seconds_capped() -> None:
    run = (checkout >> busy).run({"quantity": 1})
    assert answer(run) == Answer(503, {"error": "unavailable", "run_id": run.run_id}, {"Retry-After": "3"})
    assert Answers(max_retry_after=1)(run).headers == {"Retry-After": "1"}


def test_other_failures_answer_500_without_the_message() -> None:
    run = (checkout >> crash).run({"quantity": 1})
    got = answer(run)
    assert got == Answer(500, {"error": "internal error", "run_id": run.run_id}, {})
    assert "hunter2" not in repr(got)


def test_errors_map_your_own_types_to_a_status_or_a_function() -> None:
    run = (checkout >> crash).run({"quantity": 1})
    assert Answers(errors={RuntimeError: 502})(run).status == 502
    assert Answers(errors={Exception: lambda r: Answer(418, {"id": r.run_id}, {})})(run).status == 418


def refuse(run: Run) -> Answer:
    raise KeyError(run.context["missing"])


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        (lambda _run: 418, "must return an Answer, got 418"),
        (refuse, "the errors function refuse raised KeyError"),
        (lambda _run: Answer(418, {"at": {1, 2}}, {}), "returned a body JSON cannot carry"),
    ],
)
def test_an_errors_function_that_cannot_answer_gives_a_logged_500(
    how: Callable[[Run], Answer], problem: str, events: list[dict[str, Any]]
) -> None:
    run = (checkout >> crash).run({"quantity": 1})
    got = Answers(errors={Exception: how})(run)
    assert got == Answer(500, {"error": "internal error", "run_id": run.run_id}, {})
    logged = [event for event in events if event["event"] == "web.answer_failed"]
    assert len(logged) == 1
    assert problem in logged[0]["problem"]
    assert logged[0]["run_id"] == run.run_id


@pytest.mark.parametrize("value", [math.nan, math.inf, {1, 2}, b"bytes", object()])
def test_a_chosen_value_json_cannot_carry_gives_a_logged_500_naming_the_key(
    value: object, events: list[dict[str, Any]]
) -> None:
    run = Flow(lambda: {"total": value, "order_id": 7}).run({})
    got = answer(run, keys=("order_id", "total"))
    assert got == Answer(500, {"error": "internal error", "run_id": run.run_id}, {})
    (logged,) = [event for event in events if event["event"] == "web.answer_failed"]
    assert f"key 'total' holds a value JSON cannot carry: {type(value).__name__}" in logged["problem"]


def _retry_with(delay: object) -> Run:
    def busy_now() -> None:
        error = Retry("busy")
        error.delay = delay  # type: ignore[assignment]  # set after the check, as code may
        raise error

    return Flow(busy_now).run({})


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [(math.nan, "1"), (math.inf, "1"), (-5, "1"), ("10", "1"), (True, "1"), (0, "0"), (0.2, "1"), (1e300, "3600")],
)
def test_retry_after_is_always_whole_seconds_zero_or_more_and_capped(delay: object, seconds: str) -> None:
    got = answer(_retry_with(delay))
    assert got.status == 503
    assert got.headers == {"Retry-After": seconds}


def test_a_stop_reason_that_is_not_a_string_is_answered_as_one() -> None:
    class OutOfStock(StopFlow):
        @property
        def reason(self) -> Any:
            return {"sku": "lamp"}

    def stop() -> None:
        raise OutOfStock

    got = answer(Flow(stop).run({}))
    assert got.status == 409
    assert got.body["reason"] == "{'sku': 'lamp'}"
    json.dumps(got.body)


def test_the_message_of_an_input_that_is_not_a_mapping_names_the_flow_once() -> None:
    run = checkout.run([1, 2])  # type: ignore[arg-type]
    assert str(run.error) == "flow 'checkout' takes a mapping as its context, got list: [1, 2]"
    assert answer(run).body["message"] == str(run.error)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"succeeded": True}, "succeeded"),
        ({"stopped": 99}, "stopped"),
        ({"failed": "500"}, "failed"),
        ({"retry_after": math.nan}, "retry_after"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"keys": [1]}, "keys"),
        ({"keys": {"a": 1}}, "keys"),
        ({"errors": {"ValueError": 400}}, "errors"),
        ({"errors": {ValueError: 1000}}, "errors"),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Answers(**options)


def test_answers_takes_a_run() -> None:
    with pytest.raises(ConfigurationError, match="takes a Run"):
        answer({"status": "ok"})  # type: ignore[arg-type]


def test_the_readme_snippet_runs(run_readme_example: Callable[[str], None]) -> None:
    run_readme_example("Flows behind an endpoint")
