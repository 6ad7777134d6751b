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
    with pytest.raises(ConfigurationError, match="must return an Answer"):
        Answers(errors={Exception: lambda _run: 418})(run)  # type: ignore[arg-type,return-value]


def test_a_chosen_value_json_cannot_carry_is_named() -> None:
    flow = Flow(lambda: {"total": math.nan})
    with pytest.raises(ConfigurationError, match="'total'"):
        answer(flow.run({}), keys="total")


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
