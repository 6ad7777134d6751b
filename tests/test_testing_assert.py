"""service_flow.testing's assertions on runs and flows: what passes, and what the failures say."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service_flow import ConfigurationError, Flow, Service, StopFlow, fork_on
from service_flow.testing import (
    assert_failed,
    assert_needs,
    assert_provides,
    assert_stopped,
    assert_succeeded,
)


class CardDeclined(Exception):
    pass


class Charge(Service):
    provides = ("charged",)

    def __call__(self, total: float) -> dict[str, Any]:
        if total > 100:
            raise CardDeclined("limit exceeded", total)
        if total == 0:
            raise StopFlow("nothing to pay")
        return {"charged": total}


def price(quantity: int) -> dict[str, Any]:
    return {"total": quantity * 10.0}


price.provides = ("total",)  # type: ignore[attr-defined]
charge = Charge()
checkout = (Flow(price) >> charge).named("checkout")

succeeded = checkout.run({"quantity": 2})
stopped = checkout.run({"quantity": 0})
failed = checkout.run({"quantity": 20})


def test_how_a_run_ended_passes_when_it_did() -> None:
    assert_succeeded(succeeded)
    assert_stopped(stopped)
    assert_stopped(stopped, at="Charge", reason="nothing")
    assert_stopped(stopped, at=charge, reason="nothing to pay")
    assert_failed(failed)
    assert_failed(failed, at=Charge, error=CardDeclined)
    assert_failed(failed, error=CardDeclined("limit exceeded", 200.0))
    assert_failed(failed, error="limit")
    assert_failed(failed, error=Exception)


def test_assert_failed_gives_the_error_back() -> None:
    error = assert_failed(failed, error=CardDeclined)
    assert isinstance(error, CardDeclined)
    assert error.args == ("limit exceeded", 200.0)


def test_a_run_that_did_not_succeed_says_where_and_why() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_succeeded(failed)
    assert str(caught.value) == (
        "flow 'checkout' failed at step 'Charge' with CardDeclined: ('limit exceeded', 200.0), "
        "expected it to succeed; its steps: price (succeeded) > Charge (failed)"
    )
    with pytest.raises(AssertionError) as caught:
        assert_succeeded(stopped)
    assert str(caught.value) == (
        "flow 'checkout' stopped at step 'Charge' (reason: 'nothing to pay'), "
        "expected it to succeed; its steps: price (succeeded) > Charge (stopped)"
    )


def test_stopped_and_failed_are_told_apart() -> None:
    with pytest.raises(AssertionError, match=r"^flow 'checkout' failed at step 'Charge' .* expected it to stop"):
        assert_stopped(failed)
    with pytest.raises(AssertionError, match=r"^flow 'checkout' stopped at step 'Charge' .* expected it to fail"):
        assert_failed(stopped)
    with pytest.raises(AssertionError, match=r"^flow 'checkout' succeeded, expected it to fail; its steps: price"):
        assert_failed(succeeded)


def test_the_wrong_step_or_reason_or_error_is_named() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_stopped(stopped, at=price)
    assert str(caught.value) == (
        "flow 'checkout' stopped at step 'Charge', not at step 'price'; its steps: price (succeeded) > Charge (stopped)"
    )
    with pytest.raises(AssertionError, match="for 'nothing to pay', expected a reason containing 'stock'"):
        assert_stopped(stopped, reason="stock")
    with pytest.raises(AssertionError, match=r"with CardDeclined: .* expected a KeyError; its steps"):
        assert_failed(failed, error=KeyError)
    with pytest.raises(AssertionError, match="expected a message containing 'stock'"):
        assert_failed(failed, error="stock")
    with pytest.raises(AssertionError, match=r"expected CardDeclined\('other'\)"):
        assert_failed(failed, error=CardDeclined("other"))
    with pytest.raises(AssertionError, match="failed at step 'Charge', not at step 'price'"):
        assert_failed(failed, at="price")


def test_a_run_that_never_reached_a_step_says_so() -> None:
    refused = checkout.run([1, 2])
    error = assert_failed(refused, error="takes a mapping")
    assert error is refused.error
    with pytest.raises(AssertionError, match=r"failed before any step ran with InvalidInput: .* no step ran$"):
        assert_succeeded(refused)


def test_branches_show_in_the_path_and_async_runs_work() -> None:
    async def remote(total: float) -> None:
        raise StopFlow("offline")

    flow = Flow(price) >> fork_on("payment", {"card": charge, "remote": remote})
    run = asyncio.run(flow.arun({"quantity": 1, "payment": "remote"}))
    assert_stopped(run, at=remote, reason="offline")
    with pytest.raises(AssertionError) as caught:
        assert_succeeded(run)
    assert str(caught.value).endswith("its steps: price (succeeded) > remote [payment='remote'] (stopped)")


def test_only_runs_are_taken() -> None:
    with pytest.raises(ConfigurationError, match=r"assert_succeeded\(\) takes the Run .* got dict"):
        assert_succeeded({"status": "succeeded"})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"takes an exception class, an exception or a part of its message"):
        assert_failed(failed, error=42)


# -- needs and provides ----------------------------------------------------------------


def test_what_a_flow_needs_and_provides() -> None:
    assert_needs(checkout, "quantity")
    assert_provides(checkout, "total", "charged", given=("quantity",))
    assert_provides(checkout, "quantity", "user", given={"quantity": 1, "user": "ann"})


def test_a_key_the_flow_does_not_need_fails_naming_it() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_needs(checkout, "quantity", "total")
    assert str(caught.value) == "flow 'checkout' does not need 'total': it validates given 'quantity'"


def test_a_flow_that_cannot_run_shows_its_problems() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_needs(checkout, "total")
    assert str(caught.value) == (
        "flow 'checkout' cannot run given 'total':\n"
        "  - price needs 'quantity', which is neither given nor provided by an earlier step"
    )
    with pytest.raises(AssertionError, match=r"^flow 'checkout' cannot run given nothing:\n  - price needs"):
        assert_provides(checkout, "charged")


def test_a_key_that_is_not_provided_on_every_path_fails() -> None:
    def invoice() -> dict[str, Any]:
        return {"invoice_id": 1}

    invoice.provides = ("invoice_id",)  # type: ignore[attr-defined]
    flow = Flow(price) >> fork_on("payment", {"card": charge, "invoice": invoice})
    assert_provides(flow, "total", given=("quantity", "payment"))
    with pytest.raises(AssertionError) as caught:
        assert_provides(flow, "charged", "total", given=("quantity", "payment"))
    assert str(caught.value) == (
        "flow 'price >> fork on payment' does not provide 'charged' on every path given "
        "'payment', 'quantity'; it guarantees 'payment', 'quantity', 'total'"
    )


def test_steps_without_provides_are_named_and_never_warn() -> None:
    def undeclared(total: float) -> dict[str, Any]:
        return {"receipt": total}

    def mail(receipt: float) -> None:
        pass

    flow = Flow(price) >> undeclared >> mail
    with pytest.raises(AssertionError) as caught:  # setup.cfg turns warnings into errors
        assert_provides(flow, "receipt", given=("quantity",))
    assert str(caught.value).endswith("; steps without `provides` (they may set it, but say nothing): undeclared, mail")
    with pytest.raises(AssertionError) as caught:
        assert_needs(flow, "receipt", given=("quantity",))
    assert str(caught.value) == (
        "flow 'price >> undeclared >> mail' needs 'receipt' only if no step provides it: validation assumes "
        "that a step without `provides` sets it before mail reads it; steps without `provides`: undeclared, mail"
    )
