"""Flows built from odd parts: crafted names, odd keys and values, deep nesting."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from service_flow import (
    DEFAULT,
    MAX_DEPTH,
    Around,
    CallNext,
    Flow,
    FlowDefinitionError,
    FlowError,
    ForkError,
    Service,
    ValidationError,
    ValidationWarning,
    around,
    fork_on,
    service,
)

PWNED: list[str] = []


def pwn() -> bool:
    PWNED.append("pwned")
    return True


class Evil(str):
    """A str whose repr (and format) is code: embedded in source as repr(), it would run."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "__import__('tests.test_odd_parts', fromlist=['pwn']).pwn() and 'k'"

    def __format__(self, spec: str) -> str:
        return repr(self)


def step(k: int) -> dict[str, int]:
    return {"out": k + 1}


@pytest.fixture(autouse=True)
def _no_injection() -> Any:
    PWNED.clear()
    yield
    assert PWNED == [], "user-given text was executed as code"


# -- names and keys are real str ------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "what"),
    [
        (lambda: fork_on(Evil("k"), {1: step}), "a fork's key must be a str, got Evil"),
        (lambda: Flow(step) < (Evil("k"), {1: step}), "a fork's key must be a str, got Evil"),
        (lambda: Flow(service(step, provides=(Evil("out"),))), "must be a str, got Evil"),
        (lambda: Flow(step).named(Evil("checkout")), "a flow's name must be a str, got Evil"),
        (lambda: Flow(step, name=Evil("checkout")), "a flow's name must be a str, got Evil"),
        (lambda: Flow(service(step, name=Evil("charge"))), "the name of service FunctionService must be a str"),
    ],
)
def test_a_str_subclass_is_refused_wherever_a_name_or_key_is_given(build: Any, what: str) -> None:
    with pytest.raises(FlowDefinitionError, match=what):
        build()


def test_a_service_class_with_a_crafted_name_is_refused() -> None:
    class Charge(Service):
        name = Evil("charge")

        def __call__(self, k: int) -> None:
            return None

    with pytest.raises(FlowDefinitionError, match="must be a str, got Evil"):
        Flow(Charge())


def test_a_crafted_parameter_name_never_reaches_the_plan() -> None:
    def crafted(*args: Any, **kwargs: Any) -> dict[str, int]:
        return {"out": 1}

    for name in (Evil("k"), "not an identifier", "class"):
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        parameter = inspect.Parameter.__new__(inspect.Parameter)
        parameter._name = name  # type: ignore[attr-defined]  # what a hand-made signature may hold
        parameter._kind = kind  # type: ignore[attr-defined]
        parameter._default = inspect.Parameter.empty  # type: ignore[attr-defined]
        parameter._annotation = inspect.Parameter.empty  # type: ignore[attr-defined]
        crafted.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
        with pytest.raises(FlowDefinitionError, match="parameter whose name is not a plain identifier"):
            Flow(crafted)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Flow(step).named("check\x00out"),
        lambda: fork_on("k\x00", {1: step}),
        lambda: Flow(service(step, provides=("o\x00ut",))),
        lambda: Flow(service(step, name="st\x00ep")),
    ],
)
def test_a_nul_character_in_a_name_or_key_is_a_definition_error(build: Any) -> None:
    with pytest.raises(FlowDefinitionError, match="must not contain a NUL character"):
        build()


def test_branch_values_with_crafted_reprs_are_never_executed_and_still_route() -> None:
    class Value:
        def __repr__(self) -> str:
            return "__import__('tests.test_odd_parts', fromlist=['pwn']).pwn()"

    value = Value()
    flow = fork_on("k", {value: Flow(lambda: {"routed": True})})
    assert flow({"k": value})["routed"] is True
    assert flow.run({"k": value}).steps[-1].branch.startswith("k=__import__")
    repr(flow)


# -- odd values at run time -----------------------------------------------------------


def test_non_string_keys_given_to_a_kwargs_service_name_the_step() -> None:
    def report(**context: Any) -> dict[str, int]:
        return {"count": len(context)}

    flow = Flow(report).named("reports")
    assert flow({"a": 1}) == {"a": 1, "count": 1}
    with pytest.raises(
        FlowError, match=r"report takes the context as keyword arguments .* not strings: 1, \(2, 3\)"
    ) as caught:
        flow({1: "x", (2, 3): "y", "a": 1})
    assert type(caught.value) is FlowError
    assert caught.value.step == "report"
    assert caught.value.flow == "reports"
    run = flow.run({1: "x"})
    assert run.failed
    assert run.failed_step is not None
    assert run.failed_step.name == "report"


def test_a_type_error_raised_by_a_kwargs_service_itself_is_left_alone() -> None:
    def broken(**context: Any) -> None:
        raise TypeError("my own mistake")

    with pytest.raises(TypeError, match="my own mistake") as caught:
        Flow(broken)({"a": 1})
    assert not isinstance(caught.value, FlowError)


class BadHash:
    def __hash__(self) -> int:
        raise ValueError("no hash for you")


def test_a_fork_value_whose_hash_raises_is_a_fork_error_naming_the_fork() -> None:
    flow = fork_on("kind", {"a": step})
    with pytest.raises(ForkError, match=r"no branch for .*BadHash.* \(it cannot be hashed: ValueError\)") as caught:
        flow({"kind": BadHash(), "k": 1})
    assert caught.value.step == "fork on kind"
    run = flow.run({"kind": BadHash(), "k": 1})
    assert isinstance(run.error, ForkError)
    assert run.failed_step is not None
    assert run.failed_step.name == "fork on kind"


def test_a_fork_value_whose_hash_raises_takes_the_default_branch() -> None:
    flow = fork_on("kind", {"a": step, DEFAULT: lambda: {"out": "default"}})
    assert flow({"kind": BadHash()})["out"] == "default"


def test_a_huge_or_deeply_nested_fork_value_gives_a_short_message() -> None:
    deep: list[Any] = []
    for _ in range(100_000):  # far beyond the recursion limit: repr() itself would fail
        deep = [deep]
    flow = fork_on("kind", {"a": step})
    for value in (list(range(1_000_000)), deep, "x" * 10_000_000, {n: n for n in range(100_000)}):
        with pytest.raises(ForkError) as caught:
            flow({"kind": value})
        message = str(caught.value)
        assert message.startswith("the fork on 'kind' has no branch for ")
        assert len(message) < 300


def test_a_fork_value_whose_repr_raises_is_still_named_by_type() -> None:
    class NoRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    with pytest.raises(ForkError, match="no branch for <NoRepr instance"):
        fork_on("kind", {"a": step})({"kind": NoRepr()})


def test_a_fork_with_very_many_branches_lists_a_few_of_them() -> None:
    flow = fork_on("kind", dict.fromkeys(range(1000), step))
    with pytest.raises(ForkError) as caught:
        flow({"kind": "nope"})
    assert "and 990 more" in str(caught.value)
    assert len(str(caught.value)) < 400


def test_a_context_that_is_not_a_mapping_is_shown_short() -> None:
    with pytest.raises(FlowError) as caught:
        Flow(step)(list(range(1_000_000)))  # type: ignore[arg-type]
    assert len(str(caught.value)) < 300


# -- deep nesting ---------------------------------------------------------------------


def nested_forks(depth: int) -> Flow:
    flow = Flow(step)
    for _ in range(depth):
        flow = fork_on("kind", {"deeper": flow})
    return flow


def test_forks_nested_beyond_the_limit_are_refused_when_built() -> None:
    with pytest.raises(
        FlowDefinitionError, match=rf"the fork on 'kind' would nest the flow {MAX_DEPTH + 1} levels deep"
    ):
        nested_forks(2000)


def test_around_services_nested_beyond_the_limit_are_refused_when_built() -> None:
    def layer(n: int) -> Any:
        @around(name=f"layer{n}")
        def wrap(call_next: CallNext) -> None:
            call_next()

        return wrap

    def chain(count: int) -> Flow:
        flow = Flow(layer(0))
        for n in range(1, count):
            flow = flow >> layer(n)
        return flow

    chain(MAX_DEPTH)
    with pytest.raises(FlowDefinitionError, match=rf"layer{MAX_DEPTH} would nest the flow {MAX_DEPTH + 1} levels deep"):
        chain(500)
    with pytest.raises(FlowDefinitionError, match="levels deep"):
        Flow(*(layer(n) for n in range(500)))


def test_sub_flows_nested_beyond_the_limit_are_refused() -> None:
    class Wrap(Around):
        def __call__(self, call_next: CallNext) -> None:
            call_next()

    def nest(count: int) -> Flow:
        flow = Flow(Wrap(), step)
        for _ in range(count):
            flow = Flow(Wrap()) >> flow  # kept whole: it has an open around service
        return flow

    with pytest.raises(FlowDefinitionError, match="levels deep"):
        nest(500)


def test_a_flow_at_the_nesting_limit_runs_validates_and_has_a_repr_in_a_shallow_stack() -> None:
    flow = nested_forks(MAX_DEPTH - 1)
    inputs = {"kind": "deeper", "k": 1}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(600)  # what is left of the stack in a deep application
    try:
        assert flow(inputs)["out"] == 2
        run = flow.run(inputs)
        assert run.succeeded
        assert len(run.steps) == 1
        flow.validate(given={"kind", "k"})
        assert "fork_on('kind'" in repr(flow)
        assert len(repr(flow)) < 10_000
    finally:
        sys.setrecursionlimit(limit)


def test_around_services_at_the_nesting_limit_run() -> None:
    calls: list[int] = []

    def layer(n: int) -> Any:
        @around(name=f"layer{n}")
        def wrap(call_next: CallNext) -> None:
            calls.append(n)
            call_next()

        return wrap

    flow = Flow(*(layer(n) for n in range(MAX_DEPTH)), step)
    assert flow({"k": 1})["out"] == 2
    run = flow.run({"k": 1})
    assert run.succeeded
    assert [r.name for r in run.steps] == [*(f"layer{n}" for n in range(MAX_DEPTH)), "step"]
    repr(flow)


def test_a_partial_of_a_crafted_callable_is_checked_too() -> None:
    def base(k: int, rate: float) -> dict[str, float]:
        return {"out": k * rate}

    assert Flow(functools.partial(base, rate=2.0))({"k": 2})["out"] == 4.0


def test_odd_values_in_async_flows_give_the_same_library_errors() -> None:
    import asyncio

    async def report(**context: Any) -> dict[str, int]:
        return {"count": len(context)}

    async def nothing() -> None:
        return None

    with pytest.raises(FlowError, match="not strings: 1"):
        asyncio.run(Flow(report)({1: "x"}))
    forked = fork_on("kind", {"a": nothing})
    run = asyncio.run(forked.arun({"kind": BadHash()}))
    assert isinstance(run.error, ForkError)
    assert run.failed_step is not None
    assert run.failed_step.name == "fork on kind"


def test_an_async_flow_at_the_nesting_limit_runs() -> None:
    import asyncio

    async def leaf(k: int) -> dict[str, int]:
        return {"out": k + 1}

    flow = Flow(leaf)
    for _ in range(MAX_DEPTH - 1):
        flow = fork_on("kind", {"deeper": flow})
    assert asyncio.run(flow({"kind": "deeper", "k": 1}))["out"] == 2
    assert asyncio.run(flow.arun({"kind": "deeper", "k": 1})).succeeded


def test_a_missing_key_in_a_huge_context_gives_a_short_message() -> None:
    from service_flow import MissingContextKey

    context: dict[Any, Any] = {f"key{n}": n for n in range(200_000)}
    context["x" * 1_000_000] = 1
    context[tuple(range(100_000))] = 2
    with pytest.raises(MissingContextKey) as caught:
        Flow(step)(context)
    assert len(str(caught.value)) < 2_000
    assert "and 199982 more" in str(caught.value)


def test_nodes_built_by_hand_are_checked() -> None:
    from service_flow import Fork, SubFlow

    with pytest.raises(FlowDefinitionError, match="SubFlow takes a Flow"):
        SubFlow(step)  # type: ignore[arg-type]
    with pytest.raises(FlowDefinitionError, match="must be a Flow"):
        Fork("kind", {"a": step}, None)  # type: ignore[dict-item]
    with pytest.raises(FlowDefinitionError, match="a fork's key must be a str"):
        Fork(Evil("kind"), {"a": Flow(step)}, None)
    with pytest.raises(FlowDefinitionError, match="cannot be read as a dict"):
        Fork("kind", [1, 2], None)  # type: ignore[arg-type]


def test_a_step_built_by_hand_takes_a_service_and_nodes_any_iterable() -> None:
    from service_flow import Step

    flow = Flow(nodes=[Step(step)])  # type: ignore[arg-type]
    assert flow({"k": 1}) == {"k": 1, "out": 2}
    with pytest.raises(FlowDefinitionError, match="must be callable"):
        Step(5)  # type: ignore[arg-type]
    with pytest.raises(FlowDefinitionError, match=r"Flow\(nodes=...\) takes a tuple"):
        Flow(nodes=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [b"charge", 5, 1.5])
def test_a_service_name_that_is_not_a_str_is_refused_not_ignored(name: Any) -> None:
    class Charge(Service):
        def __call__(self, k: int) -> None:
            return None

    Charge.name = name
    with pytest.raises(FlowDefinitionError, match=f"must be a str, got {type(name).__name__}"):
        Flow(Charge())
    with pytest.raises(FlowDefinitionError, match=f"must be a str, got {type(name).__name__}"):
        Flow(service(step, name=name))


class _Unhashable:
    def __hash__(self) -> int:
        msg = "no hash today"
        raise RuntimeError(msg)


class _Branches(Mapping[Any, Any]):
    """A mapping that hands out keys a dict could not hold (as a custom mapping may)."""

    def __init__(self, *items: tuple[Any, Any]) -> None:
        self._items = items

    def __getitem__(self, value: object) -> Any:
        raise KeyError(value)

    def __iter__(self) -> Iterator[Any]:
        return iter([value for value, _ in self._items])

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> Any:
        return list(self._items)


@pytest.mark.parametrize("value", [_Unhashable(), ["a", "list"]])
def test_a_branch_value_that_cannot_be_hashed_is_refused_when_built(value: object) -> None:
    branches = _Branches((value, step))
    for build in (
        lambda: Flow(step) < ("kind", branches),
        lambda: fork_on("kind", branches),
        lambda: fork_on("kind", branches, default=step),
    ):
        with pytest.raises(FlowDefinitionError, match=r"the fork on 'kind' cannot have .* as a branch's value"):
            build()


def test_fork_on_with_only_a_default_branch() -> None:
    flow = fork_on("kind", {}, default=step)
    assert flow({"kind": "any", "k": 1})["out"] == 2


def test_names_made_of_nested_flows_stay_short() -> None:
    @around
    def wrap(call_next: CallNext) -> None:
        call_next()

    flow = Flow(step)
    for _ in range(MAX_DEPTH // 2 - 1):
        flow = wrap >> flow  # each kept whole: a flow inside a flow inside...
    assert len(flow.name) <= 100
    assert len(str(flow.run({"k": 1}))) < 200
    with pytest.raises(FlowDefinitionError) as refused:
        wrap >> (wrap >> (wrap >> flow))
    assert len(str(refused.value)) < 300
    assert Flow(step).named("x" * 500).name == "x" * 500  # a name given is kept whole


def test_set_by_a_key_that_cannot_be_hashed_is_none() -> None:
    run = Flow(step).run({"k": 1})
    assert run.set_by("out") == "step"
    assert run.set_by(["out"]) is None  # type: ignore[arg-type]
    assert run.set_by(_Unhashable()) is None  # type: ignore[arg-type]


def test_an_around_service_taking_call_next_positional_only_is_refused_when_built() -> None:
    def wrap(call_next: CallNext, /) -> None:
        call_next()

    with pytest.raises(FlowDefinitionError, match="must take `call_next` by keyword: it is positional-only"):
        Flow(around(wrap))


def test_messages_listing_steps_or_keys_stay_short_in_a_big_flow() -> None:
    async def slow(k: int) -> None:
        return None

    many_async = Flow(*[service(slow, name=f"slow{i}") for i in range(500)])
    with pytest.raises(FlowError, match="has async services") as sync_run:
        many_async.run({"k": 1})
    assert str(sync_run.value).count("slow") < 20
    assert "slow9 and 490 more" in str(sync_run.value)

    @around
    def timer(call_next: CallNext) -> None:
        call_next()

    wrapped = Flow(timer) >> many_async
    with pytest.raises(FlowDefinitionError, match="and 490 more") as compiled:
        wrapped({"k": 1})
    assert len(str(compiled.value)) < 500
    with pytest.raises(ValidationError, match="and 490 more") as validated:
        wrapped.validate({"k"})
    assert len(str(validated.value)) < 500

    def loose() -> None:
        return None

    undeclared = Flow(*[service(loose, name=f"loose{i}") for i in range(500)]) >> step
    with pytest.warns(ValidationWarning) as warned:
        undeclared.validate()
    assert "loose9 and 491 more" in str(warned[0].message)  # step too declares nothing
    assert len(str(warned[0].message)) < 500

    def takes_all(**kwargs: Any) -> None:
        return None

    with pytest.raises(FlowError, match="and 480 more") as odd_keys:
        Flow(takes_all)(dict.fromkeys(range(500), 0))
    assert len(str(odd_keys.value)) < 500
