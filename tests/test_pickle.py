"""Flows travel to other processes (process pools, Dask, Celery workers) intact."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from service_flow import DEFAULT, Around, CallNext, Flow, Service, service
from service_flow.middleware import DecoratorMiddleware


class AddTax(Service):
    provides = ("total",)

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, subtotal: float) -> dict[str, float]:
        return {"total": subtotal * (1 + self.rate)}


@service(provides=("label",))
def ship(total: float, country: str = "FR") -> dict[str, str]:
    return {"label": f"{country}:{total:.2f}"}


def invoice(total: float) -> dict[str, str]:
    return {"label": f"invoice {total:.2f}"}


class Timed(Around):
    def __call__(self, call_next: CallNext) -> dict[str, bool]:
        call_next()
        return {"timed": True}


class Handler(DecoratorMiddleware):
    def __call__(self, context: dict[str, Any]) -> dict[str, str] | None:
        try:
            self.app(context)  # type: ignore[misc]
        except ZeroDivisionError:
            return {"error": "zero"}
        return None


flow = (Timed() >> Handler() >> AddTax(0.5) < ("mode", {"ship": ship, DEFAULT: invoice})).named("orders")
INPUTS = [{"subtotal": n, "mode": "ship" if n % 2 else "other"} for n in range(6)]


def test_a_flow_survives_pickling_with_its_structure_and_behaviour() -> None:
    flow({"subtotal": 1, "mode": "ship"})  # compiled plans must not get in the way
    copy = pickle.loads(pickle.dumps(flow))
    assert repr(copy) == repr(flow)
    assert copy.name == "orders"
    assert [copy(i) for i in INPUTS] == [flow(i) for i in INPUTS]
    assert pickle.loads(pickle.dumps(ship)) is ship


def test_a_flow_runs_in_a_process_pool() -> None:
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(flow, INPUTS))
    assert results == [flow(i) for i in INPUTS]
    assert results[1] == {"subtotal": 1, "mode": "ship", "total": 1.5, "label": "FR:1.50", "timed": True}


def test_run_records_can_be_computed_on_the_unpickled_flow() -> None:
    copy: Flow = pickle.loads(pickle.dumps(flow))
    run = copy.run(INPUTS[1])
    assert [r.name for r in run.steps] == ["Timed", "Handler", "AddTax", "ship"]
