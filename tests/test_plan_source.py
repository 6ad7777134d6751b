"""The generated source of plans: pinned by golden files, one comment per step, safe names.

The golden files in ``tests/golden/`` hold the source compiled for one small flow (a
sequence, a fork and an around service), in each variant.  A change to the code
generator that changes them must be deliberate: look at the diff, then regenerate them
with::

    SERVICE_FLOW_REGOLD=1 python -m pytest tests/test_plan_source.py -p no:cacheprovider

and commit the new files with the change that made them.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import pytest

from service_flow import Flow, around, fork_on, service

GOLDEN = Path(__file__).parent / "golden"
REGOLD = os.environ.get("SERVICE_FLOW_REGOLD") == "1"


def validate(order_id: int) -> dict[str, bool]:
    return {"valid": order_id > 0}


@around
def transaction(call_next: Any) -> Any:
    return call_next()


def charge(valid: bool, amount: int = 0) -> dict[str, bool]:
    return {"charged": valid and amount >= 0}


def send_invoice(valid: bool) -> None:
    return None


def receipt(context: dict[str, Any]) -> dict[str, str]:
    return {"receipt": f"order {context['order_id']}"}


def small_flow() -> Flow:
    payment = fork_on("payment", {"card": charge, "invoice": send_invoice})
    return Flow(validate) >> transaction >> payment >> receipt


VARIANTS = {
    "call": {"aio": False, "record": False},
    "run": {"aio": False, "record": True},
    "acall": {"aio": True, "record": False},
    "arun": {"aio": True, "record": True},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_generated_source_of_a_small_flow_matches_its_golden_file(variant: str) -> None:
    source = small_flow()._plan(**VARIANTS[variant]).source
    path = GOLDEN / f"small_flow.{variant}.txt"
    if REGOLD:
        path.write_text(source, encoding="utf-8")
    assert source == path.read_text(encoding="utf-8"), (
        f"the generated source changed; if on purpose, regenerate {path.name} (see this module's docstring)"
    )


def test_the_small_flow_still_runs_as_its_golden_source_says() -> None:
    flow = small_flow()
    assert flow({"order_id": 3, "payment": "card", "amount": 5}) == {
        "order_id": 3,
        "payment": "card",
        "amount": 5,
        "valid": True,
        "charged": True,
        "receipt": "order 3",
    }
    run = flow.run({"order_id": 3, "payment": "invoice"})
    assert [r.name for r in run.steps] == ["validate", "transaction", "send_invoice", "receipt"]


def test_each_step_call_carries_the_step_name_as_a_comment() -> None:
    source = small_flow()._plan(aio=False, record=False).source
    lines = source.splitlines()
    for index, name in [(0, "validate"), (1, "transaction"), (3, "charge"), (4, "send_invoice"), (5, "receipt")]:
        (line,) = [line for line in lines if f"= _s{index}(" in line]
        assert line.endswith(f"  # {name}")
    assert any(line.endswith("  # fork on payment") for line in lines)


ODD_NAMES = [
    "two\nlines",
    "carriage\rreturn",
    "crlf\r\nend",
    "line\u2028separator",
    "paragraph\u2029separator",
    "form\x0cfeed and\x0bvtab",
    "next\x85line",
    "tab\there",
    "quote ''' \"\"\" and backslash \\",
    "x" * 500,
]


@pytest.mark.parametrize("name", ODD_NAMES, ids=range(len(ODD_NAMES)))
def test_a_step_name_with_line_breaks_or_odd_characters_cannot_break_the_code(name: str) -> None:
    def fine(a: int) -> dict[str, int]:
        return {"b": a + 1}

    def then(b: int) -> dict[str, int]:
        return {"c": b * 10}

    def boom(c: int) -> None:
        raise ValueError(c)

    odd = service(name=name)(fine)
    flow = Flow(odd) >> then >> boom
    for record in (False, True):
        source = flow._plan(aio=False, record=record).source
        # One comment line per call, never a second line made of the name.
        assert source.splitlines() == source[:-1].split("\n")
    assert (Flow(odd) >> then)({"a": 1}) == {"a": 1, "b": 2, "c": 20}  # the step after the odd one ran
    run = flow.run({"a": 1})
    assert run.failed
    assert run.failed_step is not None
    assert run.failed_step.name == "boom"
    # A traceback still points at the failing call, on its own line.
    with pytest.raises(ValueError) as caught:
        flow({"a": 1})
    text = "".join(traceback.format_exception(type(caught.value), caught.value, caught.value.__traceback__))
    assert "r = _s2(a0)  # boom" in text


def test_a_long_name_is_cut_short_in_its_comment() -> None:
    named = service(name="y" * 500)(validate)
    source = Flow(named)._plan(aio=False, record=False).source
    (line,) = [line for line in source.splitlines() if "= _s0(" in line]
    assert line.endswith("  # " + "y" * 60 + "…")
