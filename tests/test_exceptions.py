"""The exception tree, its messages and its travel across processes."""

from __future__ import annotations

import pickle

import pytest

from service_flow import (
    Fatal,
    FlowDefinitionError,
    FlowError,
    ForkError,
    MissingContextKey,
    Retry,
    StopFlow,
    ValidationError,
)


def test_every_library_error_has_one_base() -> None:
    for cls in (StopFlow, Retry, Fatal, ForkError, MissingContextKey, ValidationError, FlowDefinitionError):
        assert issubclass(cls, FlowError)
    assert issubclass(ForkError, Fatal)
    assert issubclass(FlowDefinitionError, TypeError)


def test_message_names_step_and_flow_once_known() -> None:
    error = StopFlow("duplicate")
    assert str(error) == "duplicate"
    error.flow, error.step = "orders", "Dedupe"
    assert str(error) == "duplicate [step 'Dedupe', flow 'orders']"
    assert str(Fatal(flow="orders")) == "[flow 'orders']"


def test_retry_carries_an_optional_delay() -> None:
    assert Retry().delay is None
    assert Retry("busy", delay=2.5).delay == 2.5
    with pytest.raises(ValueError, match="zero or more seconds"):
        Retry(delay=-1)


@pytest.mark.parametrize(
    "error",
    [
        StopFlow("stop", flow="f", step="s"),
        Retry("again", delay=1.5, flow="f", step="s"),
        ForkError("fork", key="k", value=3, known=(1, 2), flow="f", step="s"),
        MissingContextKey("missing", key="k", service="S", available=("a",), flow="f", step="S"),
        ValidationError("bad", problems=("p1", "p2"), flow="f"),
    ],
)
def test_errors_survive_pickling_with_their_data(error: FlowError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
