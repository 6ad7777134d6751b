"""flow.validate(): every required key given or provided upstream, on every path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service_flow import (
    DEFAULT,
    ConfigurationError,
    Flow,
    Service,
    Validation,
    ValidationError,
    ValidationWarning,
    around,
    fork_on,
    service,
)
from service_flow.middleware import DecoratorMiddleware


class Never(Service):
    """Fails the test if validation ever runs a service."""

    def __call__(self) -> None:
        raise AssertionError("validation ran a service")


@service(provides=("total",))
def add_tax(subtotal: float) -> dict[str, float]:
    raise AssertionError("validation ran a service")


@service(provides=("paid",))
def charge(total: float, card: str) -> dict[str, bool]:
    raise AssertionError("validation ran a service")


@service(provides=("paid",))
def invoice(total: float, address: str) -> dict[str, bool]:
    raise AssertionError("validation ran a service")


@service(provides=())
def receipt(paid: bool, email: str = "") -> None:
    raise AssertionError("validation ran a service")


checkout = (add_tax < ("payment", {"card": charge, "invoice": invoice})) >> receipt


def test_a_flow_whose_keys_are_all_given_or_provided_passes() -> None:
    result = checkout.validate(given={"subtotal", "payment", "card", "address"})
    assert result == Validation(frozenset({"subtotal", "payment", "card", "address", "total", "paid"}), (), ())


def test_given_can_be_a_mapping_such_as_a_sample_input() -> None:
    checkout.validate(given={"subtotal": 1, "payment": "card", "card": "x", "address": "y"})


def test_every_problem_is_reported_at_once_with_step_key_and_branch() -> None:
    with pytest.raises(ValidationError) as caught:
        checkout.validate(given={"payment"})
    problems = caught.value.problems
    assert problems == (
        "add_tax needs 'subtotal', which is neither given nor provided by an earlier step",
        "charge needs 'card', which is neither given nor provided by an earlier step (on branch payment='card')",
        "invoice needs 'address', which is neither given nor provided by an earlier step (on branch payment='invoice')",
    )
    assert str(caught.value).startswith("flow 'add_tax >> fork on payment >> receipt' has 3 problems:\n  - add_tax")
    assert caught.value.flow == "add_tax >> fork on payment >> receipt"


def test_a_key_provided_on_one_branch_only_is_missing_on_the_others() -> None:
    @service(provides=("discount",))
    def coupon() -> None:
        return None

    @service(provides=())
    def apply(discount: float) -> None:
        return None

    flow = fork_on("kind", {"a": coupon, "b": None, DEFAULT: coupon}) >> apply
    with pytest.raises(ValidationError) as caught:
        flow.validate(given={"kind"})
    assert caught.value.problems == (
        "apply needs 'discount', which is neither given nor provided by an earlier step (on branch kind='b')",
    )


def test_the_fork_key_itself_must_be_available() -> None:
    with pytest.raises(ValidationError, match="the fork on 'payment' needs 'payment'"):
        checkout.validate(given={"subtotal", "card", "address"})


def test_nested_forks_are_followed_path_by_path() -> None:
    @service(provides=())
    def needs_x(x: int) -> None:
        return None

    @service(provides=("x",))
    def make_x() -> None:
        return None

    inner = fork_on("b", {1: make_x, 2: None})
    flow = fork_on("a", {1: inner, 2: make_x}) >> needs_x
    with pytest.raises(ValidationError) as caught:
        flow.validate(given={"a", "b"})
    assert caught.value.problems == (
        "needs_x needs 'x', which is neither given nor provided by an earlier step (on branch a=1 > b=2)",
    )


def test_steps_without_provides_are_trusted_and_named_in_a_warning() -> None:
    def load(order_id: int) -> dict[str, Any]:
        return {}

    flow = Flow(load) >> add_tax
    with pytest.warns(ValidationWarning, match=r"assumed 'subtotal' for add_tax .* do not declare `provides`: load"):
        result = flow.validate(given={"order_id"})
    assert result.unchecked == ("load",)
    assert result.assumed == (("add_tax", "subtotal"),)


def test_optional_parameters_and_whole_context_services_need_nothing() -> None:
    def everything(context: dict[str, Any]) -> None:
        return None

    result = (Flow(everything) >> receipt).validate(given={"paid"})
    assert result.unchecked == ("everything",)


def test_around_services_are_checked_and_what_they_provide_counts_after_the_rest() -> None:
    @around(provides=("elapsed",))
    def timed(call_next: Any, clock: str) -> dict[str, float]:
        return {}

    @service(provides=())
    def report(elapsed: float) -> None:
        return None

    @service(provides=())
    def noop() -> None:
        return None

    with pytest.raises(ValidationError) as caught:
        (timed >> report).validate()
    assert caught.value.problems == (
        "timed needs 'clock', which is neither given nor provided by an earlier step",
        "report needs 'elapsed', which is neither given nor provided by an earlier step",
    )
    # Sealed in a sub-flow, the around service has finished before `report` runs.
    (Flow(noop) >> (timed >> noop) >> report).validate(given={"clock"})


def test_a_sync_around_service_over_async_steps_is_a_problem() -> None:
    class Handler(DecoratorMiddleware):
        provides = ()

        def __call__(self, context: dict[str, Any]) -> None:
            return None

    async def fetch() -> None:
        await asyncio.sleep(0)

    with pytest.raises(ValidationError, match=r"around service Handler is synchronous but wraps async steps \(fetch\)"):
        (Handler() >> fetch).validate()


def test_validation_runs_nothing() -> None:
    result = (Flow(Never()) >> Never()).validate()
    assert result.unchecked == ("Never",)


def test_many_paths_are_merged_without_excusing_the_paths_that_trust_nothing() -> None:
    def loose() -> None:  # declares nothing: may provide anything
        return None

    @service(provides=())
    def needs_q(q: int) -> None:
        return None

    flow = fork_on("m0", {1: loose, 2: None})
    for i in range(1, 8):
        flow = flow >> fork_on(f"m{i}", {1: None, 2: None})
    flow = flow >> needs_q
    with pytest.raises(ValidationError, match="needs_q needs 'q'"):
        flow.validate(given={f"m{i}" for i in range(8)})


def test_given_must_be_keys() -> None:
    with pytest.raises(ConfigurationError, match="takes the keys the input will hold"):
        checkout.validate(given=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be hashable"):
        checkout.validate(given=[["subtotal"]])  # type: ignore[list-item]


def test_a_whole_context_service_can_declare_what_it_requires() -> None:
    class Report(Service):
        requires = ("orders", "period")
        provides = ("report",)

        def __call__(self, context: dict[str, Any]) -> dict[str, Any]:
            return {"report": len(context["orders"])}

    with pytest.raises(ValidationError) as caught:
        Flow(Report()).validate(given=["orders"])
    assert caught.value.problems == ("Report needs 'period', which is neither given nor provided by an earlier step",)
    assert Flow(Report()).validate(given=["orders", "period"]).guaranteed >= {"report"}


def test_a_request_service_requires_its_url_placeholders() -> None:
    from service_flow.http import Client

    api = Client("http://127.0.0.1:9")
    flow = api.get("/users/{user_id}").capture("user", "$.data") >> api.post("/audit/{user}")
    with pytest.raises(ValidationError) as caught:
        flow.validate(given=[])
    assert caught.value.problems == (
        "GET /users/{user_id} needs 'user_id', which is neither given nor provided by an earlier step",
    )
    flow.validate(given=["user_id"])  # 'user' is captured by the first request


def test_strict_validation_makes_every_undeclared_step_an_error() -> None:
    def load(order_id: int) -> dict[str, float]:  # declares nothing
        raise AssertionError("validation ran a service")

    flow = Flow(load) >> add_tax >> Never()
    with pytest.warns(ValidationWarning):
        assert flow.validate(given={"order_id"}).unchecked == ("load", "Never")
    with pytest.raises(ValidationError) as caught:
        flow.validate(given={"order_id"}, strict=True)
    assert caught.value.problems == (
        "load does not declare `provides` (strict validation trusts no step)",
        "add_tax needs 'subtotal', which is neither given nor provided by an earlier step",
        "Never does not declare `provides` (strict validation trusts no step)",
    )


def test_strict_validation_passes_a_flow_that_declares_everything() -> None:
    result = checkout.validate(given={"subtotal", "payment", "card", "address"}, strict=True)
    assert result.unchecked == ()
    for wrong in ("yes", 1, None):
        with pytest.raises(ConfigurationError, match="strict"):
            checkout.validate(given={"subtotal"}, strict=wrong)  # type: ignore[arg-type]


def test_keys_a_branch_provides_never_leak_into_its_siblings_or_the_flow_before() -> None:
    @service(provides=("a",))
    def make_a() -> None:
        return None

    @service(provides=("b",))
    def make_b() -> None:
        return None

    @service(provides=())
    def needs_a(a: int) -> None:
        return None

    long_line = Flow(*(service(lambda: None, name=f"s{n}", provides=(f"k{n}",)) for n in range(50)))
    flow = (long_line < ("kind", {"x": make_a, "y": Flow(make_b) >> make_a, "z": make_b})) >> needs_a
    with pytest.raises(ValidationError) as caught:
        flow.validate(given={"kind"})
    assert caught.value.problems == (
        "needs_a needs 'a', which is neither given nor provided by an earlier step (on branch kind='z')",
    )
    assert Flow(make_b).validate().guaranteed == frozenset({"b"})
