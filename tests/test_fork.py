"""Forks: `flow < (key, {value: branch})`, defaults, errors."""

from __future__ import annotations

from typing import Any

import pytest

from service_flow import DEFAULT, Fatal, Flow, FlowDefinitionError, ForkError, MissingContextKey, Service, fork_on


class Put(Service):
    def __init__(self, **values: Any) -> None:
        self.values = values

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def charge(total: int) -> dict[str, str]:
    return {"paid": f"card:{total}"}


def invoice(total: int) -> dict[str, str]:
    return {"paid": f"invoice:{total}"}


def receipt(paid: str) -> dict[str, str]:
    return {"receipt": f"receipt for {paid}"}


checkout = Put(total=7) < ("payment", {"card": Flow(charge) >> receipt, "invoice": invoice})


def test_the_context_value_picks_the_branch() -> None:
    assert checkout({"payment": "card"}) == {
        "payment": "card",
        "total": 7,
        "paid": "card:7",
        "receipt": "receipt for card:7",
    }
    assert checkout({"payment": "invoice"})["paid"] == "invoice:7"


def test_an_unknown_value_raises_fork_error_listing_known_values() -> None:
    with pytest.raises(ForkError) as caught:
        checkout({"payment": "crypto"})
    error = caught.value
    assert isinstance(error, Fatal)
    assert (error.key, error.value, error.known) == ("payment", "crypto", ("card", "invoice"))
    assert "the fork on 'payment' has no branch for 'crypto'; known values: 'card', 'invoice'" in str(error)
    assert error.step == "fork on payment"


def test_an_unhashable_value_is_a_fork_error_not_a_type_error() -> None:
    with pytest.raises(ForkError, match=r"no branch for \['card'\]"):
        checkout({"payment": ["card"]})


def test_a_missing_fork_key_is_a_missing_context_key() -> None:
    with pytest.raises(MissingContextKey, match="the fork on 'payment' needs its key") as caught:
        checkout({})
    assert caught.value.key == "payment"


def test_default_branch_with_the_default_key() -> None:
    flow = Put(total=1) < ("payment", {"card": charge, DEFAULT: invoice})
    assert flow({"payment": "cash"})["paid"] == "invoice:1"
    assert flow({"payment": "card"})["paid"] == "card:1"
    assert flow({"payment": {"unhashable": 1}})["paid"] == "invoice:1"


def test_fork_on_starts_a_flow_with_a_fork_and_takes_a_default() -> None:
    flow = fork_on("payment", {"card": charge}, default=invoice) >> receipt
    assert flow({"payment": "card", "total": 2})["receipt"] == "receipt for card:2"
    assert flow({"payment": "other", "total": 2})["receipt"] == "receipt for invoice:2"


def test_steps_after_a_fork_run_after_whichever_branch_ran() -> None:
    flow = (Put(total=3) < ("payment", {"card": charge, "invoice": invoice})) >> receipt
    assert flow({"payment": "invoice"})["receipt"] == "receipt for invoice:3"


def test_none_branch_does_nothing() -> None:
    flow = Put(total=3) < ("payment", {"card": charge, "free": None})
    assert flow({"payment": "free"}) == {"payment": "free", "total": 3}


def test_nested_forks() -> None:
    flow = Put(total=5) < (
        "payment",
        {"card": Flow(charge) < ("email", {True: receipt, False: None}), "invoice": invoice},
    )
    assert flow({"payment": "card", "email": True})["receipt"] == "receipt for card:5"
    assert "receipt" not in flow({"payment": "card", "email": False})


def test_branch_values_can_be_any_hashable() -> None:
    flow = Put() < ("code", {200: Put(ok=True), 404: Put(ok=False), None: Put(ok=None)})
    assert flow({"code": 404})["ok"] is False
    assert flow({"code": None})["ok"] is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("payment", "a fork is written"),
        (("payment",), "a fork is written"),
        (("payment", ["card"]), "a fork is written"),
        ((1, {"a": charge}), "a fork's key must be a str"),
        (("payment", {}), "has no branches"),
        (("payment", {"card": 42}), "branch .card. of the fork on .payment. must be a flow, a service or None, got 42"),
        (("payment", {"card": ("x", {})}), "branch 'card' of the fork on 'payment' is a tuple"),
    ],
)
def test_malformed_forks_are_refused_with_a_clear_message(spec: Any, message: str) -> None:
    with pytest.raises(FlowDefinitionError, match=message):
        Flow(charge) < spec  # noqa: B015 - the refusal is the point
