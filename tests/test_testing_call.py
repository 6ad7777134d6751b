"""service_flow.testing.call / acall: one service called as a flow calls it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from service_flow import Flow, FlowError, InvalidInput, MissingContextKey, Service, around
from service_flow.testing import acall, call

if TYPE_CHECKING:
    from collections.abc import Callable


class ChargeCard(Service):
    def __init__(self, fee: float) -> None:
        self.fee = fee

    def __call__(self, amount: float, card: str, currency: str = "EUR") -> dict[str, Any]:
        return {"charged": amount + self.fee, "currency": currency}


def test_extra_keys_are_ignored_and_defaults_apply() -> None:
    ctx = {"amount": 10.0, "card": "4111", "order_id": 7, "user": "ann"}
    assert call(ChargeCard(0.5), ctx) == {"charged": 10.5, "currency": "EUR"}


def test_what_the_service_returned_comes_back_as_returned() -> None:
    marker = object()
    assert call(lambda x: marker if x else None, {"x": 1}) is marker
    assert call(lambda x: None if x else marker, {"x": 1}) is None


def test_a_missing_key_names_the_service_and_the_key() -> None:
    with pytest.raises(MissingContextKey) as caught:
        call(ChargeCard(0.5), {"amount": 1.0})
    assert caught.value.key == "card"
    assert "ChargeCard" in str(caught.value)


def test_kwargs_and_whole_context_services_see_the_context() -> None:
    assert call(lambda **kw: {"n": len(kw)}, {"a": 1, "b": 2}) == {"n": 2}
    assert call(lambda context: {"keys": sorted(context)}, {"b": 1, "a": 2}) == {"keys": ["a", "b"]}


def test_the_callers_mapping_is_not_changed() -> None:
    ctx = {"items": [1]}

    def grow(items: list[int]) -> dict[str, Any]:
        return {"total": sum(items)}

    call(grow, ctx)
    assert ctx == {"items": [1]}


def test_a_flow_gives_the_keys_it_set_or_changed() -> None:
    flow = Flow(lambda amount: {"amount": amount * 2}) >> (lambda amount: {"tax": amount / 10})
    assert call(flow, {"amount": 5, "user": "ann"}) == {"amount": 10, "tax": 1.0}


def test_an_around_service_runs_with_nothing_after_it() -> None:
    @around
    def timed(call_next: Any) -> dict[str, Any]:
        call_next()
        return {"timed": True}

    assert call(timed, {}) == {"timed": True}


def test_async_services_and_flows_with_acall() -> None:
    async def fetch(order_id: int) -> dict[str, Any]:
        return {"order": {"id": order_id}}

    assert asyncio.run(acall(fetch, {"order_id": 3, "x": 1})) == {"order": {"id": 3}}
    assert asyncio.run(acall(Flow(fetch), {"order_id": 3})) == {"order": {"id": 3}}
    assert asyncio.run(acall(ChargeCard(0.0), {"amount": 1.0, "card": "c"}))["charged"] == 1.0


def test_call_of_an_async_service_or_flow_points_to_acall() -> None:
    async def fetch(order_id: int) -> dict[str, Any]:
        return {"order": order_id}

    for target in (fetch, Flow(fetch)):
        with pytest.raises(FlowError, match=r"'fetch' is async: use `await acall"):
            call(target, {"order_id": 1})


def test_a_context_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(InvalidInput, match="got list"):
        call(ChargeCard(0.5), [1])  # type: ignore[arg-type]


def test_the_readme_snippet_runs(run_readme_example: Callable[[str], None]) -> None:
    run_readme_example("Testing services")
