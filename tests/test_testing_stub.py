"""service_flow.testing.stub and Recorder: steps of a flow replaced, then given back."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from service_flow import ConfigurationError, Driver, Flow, Service, StopFlow, around, fork_on
from service_flow.middleware import DecoratorMiddleware
from service_flow.testing import Recorder, stub

if TYPE_CHECKING:
    from collections.abc import Callable


class ChargeCard(Service):
    def __init__(self, fee: float) -> None:
        self.fee = fee

    def __call__(self, total: float, card: str, currency: str = "EUR") -> dict[str, Any]:
        return {"charged": total + self.fee, "currency": currency}


def price(quantity: int) -> dict[str, Any]:
    return {"total": quantity * 10.0}


sent: list[Any] = []


def notify(charged: float) -> None:
    sent.append(charged)


charge = ChargeCard(0.5)
checkout = Flow(price) >> charge >> notify


def test_a_stubbed_step_runs_the_fake_and_the_real_one_comes_back() -> None:
    with stub(checkout, charge, lambda: {"charged": -1.0}):
        assert checkout.run({"quantity": 1, "card": "visa"}).context["charged"] == -1.0
        assert checkout({"quantity": 1, "card": "visa"})["charged"] == -1.0
    assert checkout.run({"quantity": 1, "card": "visa"}).context["charged"] == 10.5
    assert checkout({"quantity": 1, "card": "visa"})["charged"] == 10.5


def test_the_flow_is_not_rebuilt_and_its_plans_come_back() -> None:
    checkout({"quantity": 1, "card": "visa"})
    plans = dict(checkout._plans)
    nodes = checkout.nodes
    with stub(checkout, charge, Recorder({"charged": 1.0})):
        assert checkout.nodes is nodes  # the structure is the real one
        checkout({"quantity": 1, "card": "visa"})
    assert checkout._plans == plans  # the compiled plans are kept, not compiled again


def test_a_target_is_the_service_its_class_or_its_name() -> None:
    for target in (charge, ChargeCard, "ChargeCard"):
        with stub(checkout, target, Recorder({"charged": 1.0})) as fake:
            checkout({"quantity": 2, "card": "visa"})
        assert fake.calls == [{"total": 20.0, "card": "visa", "currency": "EUR"}], target


def test_several_targets_at_once_and_the_with_gives_the_fakes() -> None:
    fakes = {price: Recorder({"total": 1.0}), "notify": Recorder()}
    with stub(checkout, fakes) as given:
        checkout({"quantity": 2, "card": "visa"})
    assert given is fakes
    assert fakes[price].calls == [{"quantity": 2}]
    fakes["notify"].assert_called_with(charged=1.5)


def test_a_target_matching_no_step_names_it_and_lists_the_steps() -> None:
    with pytest.raises(ConfigurationError) as caught:
        stub(checkout, "charge_card", None)
    assert str(caught.value) == (
        "stub(): no step of flow 'price >> ChargeCard >> notify' is named 'charge_card'; "
        "its steps: price, ChargeCard, notify"
    )
    with pytest.raises(ConfigurationError, match="is of class StopFlow"):
        stub(checkout, StopFlow, None)


def test_the_real_steps_come_back_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), stub(checkout, charge, lambda: {"charged": 0.0}):
        raise RuntimeError
    assert checkout({"quantity": 1, "card": "visa"})["charged"] == 10.5


def test_the_step_keeps_its_name_in_runs_and_errors() -> None:
    def declined() -> None:
        raise StopFlow("card declined")

    with stub(checkout, charge, declined):
        run = checkout.run({"quantity": 1, "card": "visa"})
    assert [step.name for step in run.steps] == ["price", "ChargeCard"]
    assert run.failed_step is not None
    assert run.failed_step.name == "ChargeCard"
    assert run.reason == "card declined"


def test_none_does_nothing() -> None:
    sent.clear()
    with stub(checkout, notify, None):
        checkout({"quantity": 1, "card": "visa"})
    assert sent == []


def test_stubs_nest_the_later_winning_and_each_exit_gives_back_what_was() -> None:
    with stub(checkout, charge, lambda: {"charged": 1.0}):
        with stub(checkout, {price: lambda: {"total": 0.0}, charge: lambda: {"charged": 2.0}}):
            assert checkout({"quantity": 3, "card": "visa"})["charged"] == 2.0
            assert checkout({"quantity": 3, "card": "visa"})["total"] == 0.0
        assert checkout({"quantity": 3, "card": "visa"}) == {
            "quantity": 3,
            "card": "visa",
            "total": 30.0,
            "charged": 1.0,
        }
    assert checkout({"quantity": 3, "card": "visa"})["charged"] == 30.5


def test_stubs_ending_out_of_order_leave_the_other_active() -> None:
    first = stub(checkout, price, lambda: {"total": 0.0})
    second = stub(checkout, charge, lambda: {"charged": 2.0})
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert checkout({"quantity": 3, "card": "visa"})["total"] == 30.0
    assert checkout({"quantity": 3, "card": "visa"})["charged"] == 2.0
    second.__exit__(None, None, None)
    assert checkout({"quantity": 3, "card": "visa"})["charged"] == 30.5


def test_steps_in_sub_flows_and_fork_branches_are_stubbed() -> None:
    @around
    def in_transaction(call_next: Any) -> None:
        call_next()

    def card(total: float) -> dict[str, Any]:
        return {"paid": "card"}

    def invoice() -> dict[str, Any]:
        return {"paid": "invoice"}

    kept_whole = Flow(in_transaction) >> price  # an around service keeps its flow whole
    flow = Flow(kept_whole) >> fork_on("payment", {"card": card}, default=invoice)
    fake = Recorder({"paid": "fake"})
    with stub(flow, {card: fake, price: lambda: {"total": 1.0}}):
        assert flow({"quantity": 1, "payment": "card"}) == {
            "quantity": 1,
            "payment": "card",
            "total": 1.0,
            "paid": "fake",
        }
        run = flow.run({"quantity": 1, "payment": "card"})
    assert fake.calls == [{"total": 1.0}, {"total": 1.0}]
    assert [(step.name, step.branch) for step in run.steps] == [
        ("in_transaction", ""),
        ("price", ""),
        ("card", "payment='card'"),
    ]
    assert flow({"quantity": 1, "payment": "card"})["paid"] == "card"


def test_an_around_service_replaced_by_a_recorder_still_runs_the_rest() -> None:
    seen: list[str] = []

    @around
    def timed(label: str, call_next: Any) -> None:
        seen.append(label)
        call_next()

    class Legacy(DecoratorMiddleware):
        def __call__(self, context: dict[str, Any]) -> None:
            seen.append("legacy")
            self.app(context)

    legacy = Legacy()
    flow = Flow(timed) >> legacy >> price
    with stub(flow, {timed: Recorder(), legacy: Recorder({"wrapped": True})}) as fakes:
        context = flow({"label": "t", "quantity": 2})
    assert context == {"label": "t", "quantity": 2, "total": 20.0, "wrapped": True}
    assert seen == []
    assert fakes[timed].calls == [{"label": "t"}]  # not the rest of the flow
    assert fakes[legacy].calls == [{"context": {"label": "t", "quantity": 2}}]
    # A plain fake in place of an around service runs, then the steps after it.
    with stub(flow, timed, lambda: {"timed": False}):
        assert flow({"label": "t", "quantity": 2})["timed"] is False
    assert seen == ["legacy"]


def test_async_flows_and_async_fakes() -> None:
    async def fetch_rate(currency: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"rate": 1.1}

    def convert(total: float, rate: float) -> dict[str, Any]:
        return {"converted": total * rate}

    flow = Flow(price) >> fetch_rate >> convert
    rate = Recorder({"rate": 2.0})

    async def fake_rate() -> dict[str, Any]:
        return {"rate": 3.0}

    with stub(flow, fetch_rate, rate):
        assert asyncio.run(flow.arun({"quantity": 1, "currency": "EUR"})).context["converted"] == 20.0
        assert asyncio.run(flow({"quantity": 1, "currency": "EUR"}))["converted"] == 20.0
    rate.assert_called_with(currency="EUR")
    assert rate.call_count == 2
    with stub(flow, fetch_rate, fake_rate):
        assert asyncio.run(flow.arun({"quantity": 1, "currency": "EUR"})).context["converted"] == 30.0
    # A sync fake makes the flow sync while it stands in; async again after.
    with stub(flow, fetch_rate, lambda: {"rate": 4.0}):
        assert not flow.is_async
        assert flow.run({"quantity": 1, "currency": "EUR"}).context["converted"] == 40.0
    assert flow.is_async
    assert asyncio.run(flow({"quantity": 1, "currency": "EUR"}))["converted"] == 11.0


def test_a_sync_flow_given_an_async_fake_must_be_awaited() -> None:
    async def slow_price() -> dict[str, Any]:
        return {"total": 5.0}

    with stub(checkout, price, slow_price):
        assert checkout.is_async
        run = asyncio.run(checkout.arun({"card": "visa"}))
    assert run.context["charged"] == 5.5
    assert not checkout.is_async


def test_a_driver_runs_the_fakes() -> None:
    fake = Recorder({"charged": 0.0})
    with stub(checkout, charge, fake):
        report = Driver(checkout).run([{"quantity": n, "card": "visa"} for n in range(3)])
    assert report.succeeded == 3
    assert [call["total"] for call in fake.calls] == [0.0, 10.0, 20.0]
    with stub(checkout, charge, fake):
        assert Driver(checkout, workers=3).run([{"quantity": n, "card": "visa"} for n in range(5)]).succeeded == 5
    assert fake.call_count == 8


def test_an_async_driver_runs_the_fakes() -> None:
    async def fetch_rate(currency: str) -> dict[str, Any]:
        raise AssertionError("the network, in a unit test")

    flow = Flow(price) >> fetch_rate
    fake = Recorder({"rate": 1.0})
    with stub(flow, fetch_rate, fake):
        report = asyncio.run(Driver(flow).arun([{"quantity": n, "currency": "EUR"} for n in range(4)]))
    assert report.succeeded == 4
    assert fake.calls == [{"currency": "EUR"}] * 4


def test_runs_in_other_threads_see_the_stub_while_it_is_active() -> None:
    fake = Recorder({"charged": 0.0})
    results: list[Any] = []
    with stub(checkout, charge, fake):
        workers = [
            threading.Thread(target=lambda: results.append(checkout({"quantity": 1, "card": "visa"})["charged"]))
            for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert results == [0.0] * 4
    assert fake.call_count == 4


def test_a_stub_is_entered_once_at_a_time() -> None:
    stubbed = stub(checkout, charge, None)
    with stubbed, pytest.raises(ConfigurationError, match="already active"), stubbed:
        pass
    assert checkout({"quantity": 1, "card": "visa"})["charged"] == 10.5


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="takes a Flow first"):
        stub(charge, charge, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="got only"):
        stub(checkout, charge)
    with pytest.raises(ConfigurationError, match="empty mapping"):
        stub(checkout, {})


# -- Recorder ------------------------------------------------------------------------------


def test_a_recorder_receives_what_the_replaced_service_would() -> None:
    def positional(a: int, /, b: int, *, c: int = 3) -> None:
        pass

    def whole(context: dict[str, Any]) -> None:
        pass

    def keywords(a: int, **rest: Any) -> None:
        pass

    flow = Flow(positional) >> whole >> keywords
    fakes = {positional: Recorder(), whole: Recorder(), keywords: Recorder()}
    with stub(flow, fakes):
        flow({"a": 1, "b": 2, "z": 26})
    assert fakes[positional].calls == [{"a": 1, "b": 2, "c": 3}]
    assert fakes[whole].calls == [{"context": {"a": 1, "b": 2, "z": 26}}]
    assert fakes[keywords].calls == [{"a": 1, "b": 2, "z": 26}]


def test_a_recorder_returns_a_fresh_mapping_or_computes_it() -> None:
    fixed = Recorder(returns={"n": []})
    first = fixed(x=1)
    first["n"].append(1)
    assert fixed(x=2) == {"n": [1]}  # a shallow copy: the keys are fresh
    assert first is not fixed(x=3)
    doubled = Recorder(returns=lambda quantity: {"total": quantity * 2.0})
    with stub(checkout, price, doubled):
        assert checkout({"quantity": 4, "card": "visa"})["charged"] == 8.5
    assert Recorder()(a=1) is None


def test_a_recorder_used_directly_takes_the_whole_context() -> None:
    recorder = Recorder()
    (Flow(price) >> recorder)({"quantity": 1})
    assert recorder.calls == [{"quantity": 1, "total": 10.0}]


def test_recorder_assertions_pass_and_fail_readably() -> None:
    recorder = Recorder({"charged": 1.0})
    recorder.assert_not_called()
    with pytest.raises(AssertionError, match=r"^the recorder was never called; expected a call with \(a=1\)$"):
        recorder.assert_called_with(a=1)
    with pytest.raises(AssertionError, match="was called 0 times, expected once"):
        recorder.assert_called_once()
    with stub(checkout, charge, recorder):
        checkout({"quantity": 1, "card": "visa"})
    recorder.assert_called_once()
    recorder.assert_called_with(total=10.0, card="visa", currency="EUR")
    with pytest.raises(AssertionError) as caught:
        recorder.assert_called_with(total=11.0, card="visa")
    assert str(caught.value) == (
        "the recorder of step 'ChargeCard' was last called with (total=10.0, card='visa', currency='EUR'), "
        "expected (total=11.0, card='visa'): total=10.0 instead of total=11.0; currency='EUR' was given too"
    )
    with pytest.raises(AssertionError, match=r"expected never; its calls:\n  1\. \(total=10.0, card='visa'"):
        recorder.assert_not_called()


def test_recorder_messages_mask_secrets() -> None:
    recorder = Recorder()
    recorder(api_token="s3cr3t-value", user="ann")  # noqa: S106
    with pytest.raises(AssertionError) as caught:
        recorder.assert_called_with(api_token="other-secret", user="ann")  # noqa: S106
    assert "s3cr3t" not in str(caught.value)
    assert "other-secret" not in str(caught.value)
    assert "api_token=***" in str(caught.value)
    assert recorder.calls[0]["api_token"] == "s3cr3t-value"  # noqa: S105 - the test itself sees them


def test_the_readme_example_runs(run_readme_example: Callable[[str], None]) -> None:
    run_readme_example("A flow with a stubbed step")


def test_entering_a_stub_costs_about_a_compilation() -> None:
    # The README says about a millisecond for a short flow: a tenth of a second is a bug.
    flow = Flow(price) >> charge >> notify
    flow({"quantity": 1, "card": "visa"})
    started = time.perf_counter()
    for _ in range(10):
        with stub(flow, charge, None):
            pass
    assert (time.perf_counter() - started) / 10 < 0.1


def test_no_stub_is_left_behind_by_runs_in_other_threads() -> None:
    # Threads compile and run the flow while stubs come and go: afterwards it is the real flow.
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between any two bytecodes, or nearly
    try:
        _stubs_come_and_go()
    finally:
        sys.setswitchinterval(switching)


def _stubs_come_and_go() -> None:
    for attempt in range(5):
        flow = Flow(price) >> charge >> notify  # a fresh flow: nothing compiled yet
        stop = threading.Event()

        def keep_running(flow: Flow = flow, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                flow({"quantity": 1, "card": "visa"})
                flow.run({"quantity": 1, "card": "visa"})

        workers = [threading.Thread(target=keep_running) for _ in range(3)]
        for worker in workers:
            worker.start()
        for _ in range(20):
            with stub(flow, charge, lambda: {"charged": -1.0}):
                pass
        stop.set()
        for worker in workers:
            worker.join()
        assert flow({"quantity": 1, "card": "visa"})["charged"] == 10.5, attempt
        assert flow.run({"quantity": 1, "card": "visa"}).context["charged"] == 10.5, attempt
