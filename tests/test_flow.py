"""Composition with >>, running a flow, names, repr and the errors of a wrong flow."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from service_flow import DEFAULT, Flow, FlowDefinitionError, FlowError, Service, Step, StopFlow, SubFlow, fork_on
from service_flow.middleware import DecoratorMiddleware


class Inc(Service):
    def __init__(self, key: str = "n") -> None:
        self.key = key

    def __call__(self, context: dict[str, Any]) -> dict[str, int]:
        return {self.key: context.get(self.key, 0) + 1}


class Validate(Service):
    def __call__(self, order_id: int) -> dict[str, bool]:
        if order_id < 0:
            raise StopFlow(f"order {order_id} is not valid")
        return {"valid": True}


def boom(valid: bool) -> None:
    raise ValueError("no stock")


def test_rshift_builds_a_new_flow_and_leaves_its_operands_alone() -> None:
    a, b, c = Inc(), Inc(), Inc()
    ab = a >> b
    abc = ab >> c
    assert ab is not abc
    assert [node.service for node in ab.nodes] == [a, b]  # type: ignore[union-attr]
    assert [node.service for node in abc.nodes] == [a, b, c]  # type: ignore[union-attr]
    assert ab({}) == {"n": 2}
    assert abc({}) == {"n": 3}


def test_a_flow_is_a_service_inside_another_flow() -> None:
    inner = Inc() >> Inc()
    outer = Inc() >> inner >> Inc()
    assert outer({}) == {"n": 4}
    assert inner({}) == {"n": 2}
    assert all(isinstance(node, Step) for node in outer.nodes)  # spliced, not nested


def test_calling_does_not_change_the_callers_mapping() -> None:
    given = {"n": 1}
    result = (Inc() >> Inc())(given)
    assert given == {"n": 1}
    assert result == {"n": 3}
    assert type(result) is dict


def test_any_mapping_or_nothing_is_a_context() -> None:
    from types import MappingProxyType

    assert Flow(Inc())(MappingProxyType({"n": 4})) == {"n": 5}
    assert Flow(Inc())() == {"n": 1}


def test_a_context_that_is_not_a_mapping_is_refused_naming_the_flow() -> None:
    flow = (Inc() >> Inc()).named("counter")
    with pytest.raises(FlowError, match=r"flow 'counter' takes a mapping as its context, got list"):
        flow([("n", 1)])  # type: ignore[arg-type]
    run = flow.run("n=1")  # type: ignore[arg-type]  # a run reports it instead of raising
    assert run.failed
    assert "takes a mapping" in str(run.error)


def test_empty_flow_is_the_identity() -> None:
    assert Flow()({"a": 1}) == {"a": 1}
    assert Flow().run({"a": 1}).succeeded


def test_name_is_given_or_made_of_the_steps() -> None:
    assert (Inc() >> Validate()).name == "Inc >> Validate"
    assert (Inc() >> Inc() >> Inc() >> Validate()).name == "Inc >> … >> Validate"
    named = (Inc() >> Validate()).named("checkout")
    assert named.name == "checkout"
    assert Flow().name == "empty flow"


def test_flows_compare_by_structure() -> None:
    a, b = Inc(), Inc()
    assert (a >> b) == (a >> b)
    assert hash(a >> b) == hash(a >> b)
    assert (a >> b) != (b >> a)
    assert (a >> b) != (a >> b).named("other")


def test_repr_shows_steps_and_forks_on_one_line_when_short() -> None:
    flow = Validate() >> Inc() < ("kind", {"a": Inc(), "b": Inc() >> Inc(), DEFAULT: None})
    assert repr(flow) == "<Flow: Validate >> Inc < ('kind', {'a': Inc, 'b': Inc >> Inc, DEFAULT: None})>"
    assert repr((flow >> boom).named("x")) == (
        "<Flow 'x': (Validate >> Inc < ('kind', {'a': Inc, 'b': Inc >> Inc, DEFAULT: None})) >> boom>"
    )
    assert repr(fork_on("kind", {"a": Inc()})) == "<Flow: fork_on('kind', {'a': Inc})>"


def test_repr_of_a_long_flow_fits_one_screen() -> None:
    flow = Flow(*[Inc(f"key{i}") for i in range(200)]) < ("key0", {1: Inc(), 2: Inc()})
    text = repr(flow)
    assert len(text.splitlines()) < 30
    assert "… 189 more steps …" in text
    assert "('key0', {" in text


def test_a_flow_has_no_truth_value_so_chained_comparisons_fail_loudly() -> None:
    a = Flow(Inc())
    with pytest.raises(TypeError, match="chained comparison"):
        bool(a)
    with pytest.raises(FlowDefinitionError, match=r"put each fork in parentheses"):
        a < ("n", {1: Inc()}) < ("n", {2: Inc()})  # noqa: B015 - the mistake under test
    with pytest.raises(FlowDefinitionError):
        Inc() < Inc() < Inc()  # type: ignore[operator]  # noqa: B015


def test_forks_in_sequence_with_parentheses() -> None:
    flow = (Inc() < ("n", {1: Inc("a")})) < ("n", {1: Inc("b")})
    assert flow({}) == {"n": 1, "a": 1, "b": 1}


def test_fork_then_rshift_without_parentheses_is_explained() -> None:
    with pytest.raises(FlowDefinitionError, match=r"Write `\(a < \(key, branches\)\) >> b`"):
        Inc() < ("n", {1: Inc()}) >> Inc()  # type: ignore[operator]  # noqa: B015


def test_a_tuple_or_none_on_the_right_of_rshift_is_refused() -> None:
    with pytest.raises(FlowDefinitionError, match="a fork is written"):
        Inc() >> ("n", {1: Inc()})  # type: ignore[operator]
    with pytest.raises(FlowDefinitionError, match=r"must be callable.*got None"):
        Inc() >> None  # type: ignore[operator]


def test_stop_flow_propagates_from_a_plain_call_naming_flow_and_step() -> None:
    flow = (Inc() >> Validate() >> boom).named("orders")
    with pytest.raises(StopFlow) as caught:
        flow({"order_id": -1})
    assert caught.value.flow == "orders"
    assert caught.value.step == "Validate"
    assert caught.value.reason == "order -1 is not valid"
    assert str(caught.value) == "order -1 is not valid [step 'Validate', flow 'orders']"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are 3.11+")
def test_other_exceptions_propagate_unchanged_with_a_note_naming_the_step() -> None:
    flow = (Validate() >> boom).named("orders")
    with pytest.raises(ValueError, match="no stock") as caught:
        flow({"order_id": 1})
    assert caught.value.__notes__ == ["raised in step 'boom' of flow 'orders'"]
    with pytest.raises(ValueError) as again:
        flow({"order_id": 1})
    assert len(again.value.__notes__) == 1


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are 3.11+")
def test_the_note_names_the_branch_of_a_failing_step_in_a_fork() -> None:
    flow = (Validate() < ("kind", {"x": Inc(), "y": boom})).named("orders")
    with pytest.raises(ValueError) as caught:
        flow({"order_id": 1, "kind": "y"})
    assert caught.value.__notes__ == ["raised in step 'boom' (branch kind='y') of flow 'orders'"]


def test_an_error_raised_by_an_around_service_itself_names_it() -> None:
    class Guard(DecoratorMiddleware):
        def __call__(self, context: dict[str, Any]) -> None:
            try:
                self.app(context)
            except StopFlow as error:
                raise StopFlow("guard refused") from error

    with pytest.raises(StopFlow) as caught:
        (Guard() >> Validate())({"order_id": -5})
    assert caught.value.step == "Guard"


def test_traceback_shows_the_generated_plan_line() -> None:
    import traceback

    with pytest.raises(ValueError) as caught:
        (Validate() >> boom)({"order_id": 1})
    error = caught.value
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))  # 3.9's signature
    assert "service_flow plan" in text
    assert "r = _s1(a0)" in text


def test_a_flow_with_an_around_service_on_the_right_stays_a_sub_flow() -> None:
    class Wrap(DecoratorMiddleware):
        def __call__(self, context: dict[str, Any]) -> dict[str, bool]:
            self.app(context)
            return {"wrapped": True}

    sealed = Wrap() >> Inc()
    flow = Inc() >> sealed >> Inc()
    assert isinstance(flow.nodes[1], SubFlow)
    assert flow({}) == {"n": 3, "wrapped": True}
    assert list(flow.iter_steps())[1].service.__class__ is Wrap


def test_repr_of_a_fork_with_many_branches_fits_one_screen() -> None:
    flow = fork_on("code", {code: Inc() for code in range(40)})
    text = repr(flow)
    assert len(text.splitlines()) < 20
    assert "… 29 more branches" in text
    assert text.splitlines()[1].strip() == "fork_on('code', {"


def test_a_composition_error_names_the_flow_being_extended() -> None:
    with pytest.raises(FlowDefinitionError) as caught:
        (Inc() >> Validate()).named("orders") >> 42  # type: ignore[operator]
    assert caught.value.flow == "orders"
    assert str(caught.value).endswith("[flow 'orders']")
    with pytest.raises(FlowDefinitionError, match=r"has no branches \[flow 'orders'\]"):
        (Inc() >> Validate()).named("orders") < ("k", {})  # noqa: B015


def test_a_long_chain_keeps_every_intermediate_flow_as_it_was() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def bump(n: int) -> dict[str, int]:
        return {"n": n + 1}

    flows = [Flow(bump)]
    for _ in range(300):
        flows.append(flows[-1] >> bump)
    branch = flows[100] >> (lambda n: {"n": -n})  # a second flow grown from the middle of the chain
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave inside the join: 13 in 40 tries lost a node before
    try:
        for _ in range(5):
            again = [Flow(bump)]
            for _ in range(300):
                again.append(again[-1] >> bump)
            with ThreadPoolExecutor(4) as pool:  # the nodes are joined when first read, from any thread
                assert list(pool.map(lambda flow: len(flow.nodes), reversed(again))) == list(range(301, 0, -1))
        with ThreadPoolExecutor(4) as pool:
            lengths = list(pool.map(lambda flow: len(flow.nodes), reversed(flows)))
    finally:
        sys.setswitchinterval(switch)
    assert lengths == list(range(301, 0, -1))
    assert [flow({"n": 0})["n"] for flow in flows[::50]] == [1, 51, 101, 151, 201, 251, 301]
    assert branch({"n": 0})["n"] == -101
    assert flows[100].nodes == flows[300].nodes[:101]
    assert flows[299] >> bump == flows[300]


def test_flow_nodes_must_be_nodes() -> None:
    with pytest.raises(FlowDefinitionError, match="takes Step, Fork and SubFlow nodes"):
        Flow(nodes=("not a node",))  # type: ignore[arg-type]
