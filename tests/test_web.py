"""Inputs that are not mappings give failed runs (the first part of running flows behind endpoints)."""

from __future__ import annotations

import asyncio

import pytest

from service_flow import Flow, InvalidInput, RunStatus, service


@service(provides=("y",))
def double(x: int) -> dict[str, int]:
    return {"y": 2 * x}


@service(provides=("z",))
async def plus_one(y: int) -> dict[str, int]:
    return {"z": y + 1}


@pytest.mark.parametrize("given", [[1, 2], "x=1", 3, 2.5, True, b"{}"])
def test_run_of_an_input_that_is_not_a_mapping_is_a_failed_run_naming_it(given: object) -> None:
    run = Flow(double).named("checkout").run(given)  # type: ignore[arg-type]
    assert run.status is RunStatus.FAILED
    assert isinstance(run.error, InvalidInput)
    assert run.error.flow == "checkout"
    assert f"got {type(given).__name__}: " in str(run.error)
    assert run.steps == ()
    assert run.failed_step is None
    assert run.context == {}


def test_arun_of_an_input_that_is_not_a_mapping_is_a_failed_run() -> None:
    run = asyncio.run((Flow(double) >> plus_one).arun([1]))  # type: ignore[arg-type]
    assert run.failed
    assert isinstance(run.error, InvalidInput)
    assert "got list: [1]" in str(run.error)


def test_none_stays_the_empty_input_and_a_plain_call_still_raises() -> None:
    run = Flow(double).run(None)
    assert run.failed
    assert not isinstance(run.error, InvalidInput)  # the empty input: x is missing
    with pytest.raises(InvalidInput, match="got list"):
        Flow(double)([1])  # type: ignore[arg-type]


def test_a_service_may_name_the_field_it_refuses() -> None:
    error = InvalidInput("quantity must be at least 1", key="quantity")
    assert error.key == "quantity"
    assert InvalidInput("no key").key is None
