"""Any callable is a service: how parameters are filled and results merged."""

from __future__ import annotations

import functools
import inspect
from types import MappingProxyType
from typing import Any

import pytest

from service_flow import Flow, FlowDefinitionError, FunctionService, MissingContextKey, Service, service


class AddTax(Service):
    provides = ("total",)

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, subtotal: float) -> dict[str, float]:
        return {"total": round(subtotal * (1 + self.rate), 2)}


def ship(total: float, country: str = "FR") -> dict[str, str]:
    return {"label": f"{country}:{total}"}


class Cart:
    def __init__(self) -> None:
        self.items = ["book"]

    def count(self, customer: str) -> dict[str, Any]:
        return {"count": len(self.items), "who": customer}


def test_service_subclass_is_configured_once_and_called_by_parameter_name() -> None:
    flow = AddTax(0.2) >> ship
    assert flow({"subtotal": 10.0}) == {"subtotal": 10.0, "total": 12.0, "label": "FR:12.0"}


def test_plain_function_lambda_bound_method_and_partial_are_services() -> None:
    def shout(word: str) -> dict[str, str]:
        return {"word": word.upper()}

    flow = Flow(shout) >> (lambda word: {"length": len(word)}) >> Cart().count >> functools.partial(ship, country="DE")
    assert flow({"word": "hi", "customer": "ann", "total": 3}) == {
        "word": "HI",
        "customer": "ann",
        "total": 3,
        "length": 2,
        "count": 1,
        "who": "ann",
        "label": "DE:3",
    }


def test_a_plain_function_can_come_first_before_a_service() -> None:
    def parse(raw: str) -> dict[str, float]:
        return {"subtotal": float(raw)}

    assert (parse >> AddTax(0.1))({"raw": "10"})["total"] == 11.0


def test_two_bare_functions_need_a_flow_around_the_first() -> None:
    def one() -> dict[str, int]:
        return {"one": 1}

    with pytest.raises(TypeError):
        one >> ship  # type: ignore[operator]  # functions have no >>
    assert (Flow(one) >> (lambda one: {"two": one + 1}))({}) == {"one": 1, "two": 2}


def test_callable_object_that_is_not_a_service() -> None:
    class Doubler:
        def __call__(self, n: int) -> dict[str, int]:
            return {"n": n * 2}

    assert Flow(Doubler(), Doubler())({"n": 3}) == {"n": 12}


def test_parameter_with_default_is_optional_and_filled_when_present() -> None:
    flow = Flow(ship)
    assert flow({"total": 5})["label"] == "FR:5"
    assert flow({"total": 5, "country": "IT"})["label"] == "IT:5"


def test_keyword_only_and_positional_only_parameters() -> None:
    def both(a: int, /, b: int, *, c: int, d: int = 4) -> dict[str, int]:
        return {"sum": a + b + c + d}

    assert Flow(both)({"a": 1, "b": 2, "c": 3})["sum"] == 10
    assert Flow(both)({"a": 1, "b": 2, "c": 3, "d": 0})["sum"] == 6


def test_missing_required_key_names_the_service_the_key_and_what_the_context_has() -> None:
    with pytest.raises(MissingContextKey) as caught:
        (AddTax(0.2) >> ship)({"sub_total": 10.0, "user": "ann"})
    error = caught.value
    assert error.key == "subtotal"
    assert error.service == "AddTax"
    assert error.step == "AddTax"
    assert error.available == ("sub_total", "user")
    message = str(error)
    assert "AddTax needs 'subtotal'" in message
    assert "did you mean 'sub_total'?" in message
    assert "sub_total, user" in message
    assert "flow 'AddTax >> ship'" in message


def test_missing_key_error_lists_every_missing_key_of_the_step() -> None:
    def needs(a: int, b: int, c: int) -> None:
        return None

    with pytest.raises(MissingContextKey, match=r"needs 'a'.*nor are 'c'"):
        Flow(needs)({"b": 1})


def test_a_keyerror_raised_by_a_service_is_not_mistaken_for_a_missing_key() -> None:
    def lookup(table: dict[str, int]) -> dict[str, int]:
        return {"value": table["absent"]}

    with pytest.raises(KeyError) as caught:
        Flow(lookup)({"table": {}})
    assert not isinstance(caught.value, MissingContextKey)


def test_only_parameter_named_context_receives_the_whole_context_and_may_change_it() -> None:
    def audit(context: dict[str, Any]) -> dict[str, int]:
        context["seen"] = True
        return {"keys": len(context)}

    assert Flow(audit)({"a": 1}) == {"a": 1, "seen": True, "keys": 2}


def test_context_beside_other_parameters_is_an_ordinary_key() -> None:
    def uses(context: str, a: int) -> dict[str, str]:
        return {"out": f"{context}{a}"}

    assert Flow(uses)({"context": "x", "a": 1})["out"] == "x1"


def test_var_keyword_receives_the_whole_context_as_keywords() -> None:
    def everything(a: int, **rest: Any) -> dict[str, Any]:
        return {"others": sorted(rest)}

    assert Flow(everything)({"a": 1, "b": 2, "c": 3})["others"] == ["b", "c"]
    with pytest.raises(MissingContextKey, match="needs 'a'"):
        Flow(everything)({"b": 2})


def test_returned_mapping_is_merged_none_is_fine() -> None:
    flow = Flow(lambda: None) >> (lambda: MappingProxyType({"frozen": 1}))
    assert flow({}) == {"frozen": 1}


def test_non_mapping_return_is_ignored_with_a_warning_naming_the_service(events: list[dict[str, Any]]) -> None:
    def answer() -> int:
        return 42

    assert Flow(answer)({"a": 1}) == {"a": 1}
    warnings = [e for e in events if e["log_level"] == "warning"]
    assert warnings == [
        {
            "event": "step.return_ignored",
            "log_level": "warning",
            "flow": "answer",
            "step": "answer",
            "returned": "int",
            "hint": "a service returns a mapping of the keys it sets, or None",
        }
    ]


def test_service_decorator_keeps_the_function_callable_and_adds_operators() -> None:
    @service(provides=("total",))
    def add(subtotal: float) -> dict[str, float]:
        return {"total": subtotal + 1}

    assert isinstance(add, FunctionService)
    assert add(1.0) == {"total": 2.0}
    assert add.name == "add"
    assert add.provides == ("total",)
    assert add.__doc__ is None
    assert (add >> ship)({"subtotal": 1.0})["label"] == "FR:2.0"


def test_bare_service_decorator_and_string_provides() -> None:
    @service
    def one() -> dict[str, int]:
        return {"one": 1}

    assert one.provides is None
    assert service(ship, provides="label").provides == ("label",)
    assert inspect.signature(one).parameters == {}


def test_provides_must_be_keys() -> None:
    class Bad(Service):
        provides = (1, 2)  # type: ignore[assignment]

        def __call__(self) -> None:
            return None

    with pytest.raises(FlowDefinitionError, match=r"Bad.provides must be a key or a tuple of keys"):
        Flow(Bad())


def test_a_non_callable_step_is_refused_with_its_value() -> None:
    with pytest.raises(FlowDefinitionError, match=r"must be callable.*got 42"):
        Flow(AddTax(0.1)) >> 42  # type: ignore[operator]
    with pytest.raises(TypeError):  # FlowDefinitionError is a TypeError too
        Flow("not a service")  # type: ignore[arg-type]


def test_a_callable_without_readable_parameters_is_refused_with_advice() -> None:
    with pytest.raises(FlowDefinitionError, match=r"cannot read the parameters of service max.*wrap it in a function"):
        Flow(max)


def test_signature_is_read_once_when_the_flow_is_built_not_per_call() -> None:
    reads = []

    class Counted:
        @property
        def __signature__(self) -> inspect.Signature:
            reads.append(1)
            return inspect.Signature([inspect.Parameter("a", inspect.Parameter.POSITIONAL_OR_KEYWORD)])

        def __call__(self, a: int) -> dict[str, int]:
            return {"b": a}

    flow = Flow(Counted())
    built = len(reads)
    for n in range(50):
        assert flow({"a": n})["b"] == n
        assert flow.run({"a": n}).succeeded
    assert len(reads) == built


def test_an_unrelated_name_attribute_does_not_rename_a_service() -> None:
    class Warehouse:
        name = "Berlin"

        def __call__(self, sku: str) -> dict[str, int]:
            return {"stock": 1}

    class Named(Service):
        name = "reserve-stock"

        def __call__(self) -> None:
            return None

    assert [step.name for step in Flow(Warehouse(), Named(), Flow(Named()).named("inner")).iter_steps()] == [
        "Warehouse",
        "reserve-stock",
        "reserve-stock",
    ]
    assert (
        Flow(Warehouse()) >> (Named() >> Named()).named("pair")
    ).name == "Warehouse >> reserve-stock >> reserve-stock"


def test_arguments_bound_by_a_partial_are_not_replaced_by_the_context() -> None:
    def charge(amount: int, api_key: str) -> dict[str, str]:
        return {"charged": f"{amount} with {api_key}"}

    configured = functools.partial(charge, api_key="CONFIGURED")
    assert Flow(configured)({"amount": 1, "api_key": "from input"})["charged"] == "1 with CONFIGURED"


def test_a_service_class_instead_of_an_instance_is_refused_with_advice() -> None:
    with pytest.raises(
        FlowDefinitionError, match=r"AddTax is a service class: put an instance in the flow, `AddTax\(...\)`"
    ):
        Flow(ship) >> AddTax


def test_the_ignored_return_warning_comes_once_per_step(events: list[dict[str, Any]]) -> None:
    flow = Flow(lambda: 42)
    for _ in range(5):
        flow({})
    assert [e["event"] for e in events] == ["step.return_ignored"]
