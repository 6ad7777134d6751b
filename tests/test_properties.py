"""Property tests of composition: associativity, immutability, runs, thread safety.

Flows are drawn as small syntax trees (`Seq` tuples of `StepNode`, `ForkNode`,
`AroundNode`) over a fixed pool of distinct services.  `build` turns a tree into a
`Flow` with the public operators; `model_seq` is an independent interpreter of the same
tree that defines the expected final context and the expected step records.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from hypothesis import given, settings
from hypothesis import strategies as st

from service_flow import DEFAULT, Around, Flow, ForkError, Service, around, fork_on, service
from service_flow.middleware import DecoratorMiddleware

KEYS = ("k0", "k1", "k2", "k3")
MOD = 5  # every value in a context is an int in range(MOD)

# -- the pool of services -------------------------------------------------------------------
# Each reads context keys by parameter name and writes keys from KEYS.


def bump(k0):
    return {"k1": (k0 + 1) % MOD}


def spread(k1):
    return {"k2": (k1 * 2) % MOD, "k3": (k1 + 3) % MOD}


class Shift(Service):
    def __init__(self, by):
        self.by = by
        self.name = f"shift{by}"

    def __call__(self, k2):
        return {"k0": (k2 + self.by) % MOD}


@service
def mirror(k3):
    return {"k1": k3}


class Bonus(Service):
    def __call__(self, k3, bonus=2):
        return {"k2": (k3 + bonus) % MOD}


def stamp(context):
    # Takes the whole context and changes it in place; returns nothing.
    context["k3"] = (context["k0"] + context["k2"]) % MOD


class Count(Service):
    def __call__(self, context):
        return {"k0": len(context) % MOD}


def scale(k2, factor):
    return {"k3": (k2 * factor) % MOD}


@dataclass(frozen=True)
class Entry:
    """A pool service and the context keys it reads (``None``: the whole context)."""

    service: Callable[..., Any]
    reads: Optional[tuple[str, ...]]

    @property
    def name(self) -> str:
        return Flow(self.service).nodes[0].name

    @property
    def is_plain_function(self) -> bool:
        return not isinstance(self.service, Service)


POOL = (
    Entry(bump, ("k0",)),
    Entry(spread, ("k1",)),
    Entry(Shift(1), ("k2",)),
    Entry(Shift(3), ("k2",)),
    Entry(mirror, ("k3",)),
    Entry(lambda k1: None, ("k1",)),  # noqa: ARG005 - reads k1, writes nothing
    Entry(Bonus(), ("k3", "bonus")),
    Entry(stamp, None),
    Entry(Count(), None),
    Entry(functools.partial(scale, factor=2), ("k2",)),
)

# Around services: each runs `logic(context, call_next)`.


def logic_count_after(context, call_next):
    call_next()
    return {"k0": sum(context[key] for key in KEYS) % MOD}


def logic_before_and_after(context, call_next):
    context["k2"] = (context["k2"] + 1) % MOD
    call_next()
    return {"k3": (context["k1"] * 2) % MOD}


def logic_only_before(context, call_next):
    context["k1"] = (context["k0"] + context["k3"]) % MOD
    call_next()


class CountAfter(Around):
    def __call__(self, context, call_next):
        return logic_count_after(context, call_next)


class BeforeAndAfter(DecoratorMiddleware):
    def __call__(self, context):
        return logic_before_and_after(context, lambda: self.app(context))


@around
def only_before(context, call_next):
    return logic_only_before(context, call_next)


@dataclass(frozen=True)
class AroundEntry:
    service: Callable[..., Any]
    logic: Callable[[dict[str, Any], Callable[[], Any]], Any]

    @property
    def name(self) -> str:
        return Flow(self.service).nodes[0].name


AROUND_POOL = (
    AroundEntry(CountAfter(), logic_count_after),
    AroundEntry(BeforeAndAfter(), logic_before_and_after),
    AroundEntry(only_before, logic_only_before),
)

# -- flows as trees --------------------------------------------------------------------------

NO_DEFAULT = "no default"


@dataclass(frozen=True)
class StepNode:
    entry: Entry


@dataclass(frozen=True)
class AroundNode:
    entry: AroundEntry


@dataclass(frozen=True)
class ForkNode:
    key: str
    branches: tuple[tuple[int, Optional[Seq]], ...]  # a None branch does nothing
    default: Union[Seq, str]  # NO_DEFAULT, or the default branch
    style: str  # how build() writes it: "lt", "default_key" or "fork_on"


@dataclass(frozen=True)
class SubNode:
    """A flow kept whole inside another (only made by `compose`)."""

    seq: Seq


Node = Union[StepNode, AroundNode, ForkNode, SubNode]
Seq = tuple[Node, ...]


def build_branch(seq: Optional[Seq]) -> Any:
    if seq is None:
        return None
    if len(seq) == 1 and isinstance(seq[0], StepNode):
        return seq[0].entry.service  # a bare service as a branch
    return build(seq)


def build(seq: Seq) -> Flow:
    """The flow a tree describes, written with the public operators."""
    flow = Flow()
    for node in seq:
        if isinstance(node, (StepNode, AroundNode)):
            flow = flow >> node.entry.service
            continue
        assert isinstance(node, ForkNode)
        branches = {value: build_branch(branch) for value, branch in node.branches}
        if node.style == "fork_on":
            default = None if isinstance(node.default, str) else build(node.default)
            flow = flow >> fork_on(node.key, branches, default=default)
        else:
            if not isinstance(node.default, str):
                branches[DEFAULT] = build_branch(node.default)
            flow = flow < (node.key, branches)
    return flow


def operand(seq: Seq) -> Any:
    """A tree as an operand of >>: a lone service stays bare, anything else is a flow."""
    if len(seq) == 1 and isinstance(seq[0], StepNode):
        return seq[0].entry.service
    return build(seq)


def compose(left: Seq, right: Seq) -> Seq:
    """The tree of ``build(left) >> build(right)``: a right flow with a top-level
    around service stays a unit, any other is spliced in."""
    if any(isinstance(node, AroundNode) for node in right):
        return (*left, SubNode(right))
    return (*left, *right)


# -- the model interpreter ---------------------------------------------------------------------


class ModelForkError(Exception):
    def __init__(self, key, value):
        super().__init__(key, value)
        self.key = key
        self.value = value


Record = tuple[str, tuple[str, ...]]


def model_step(entry: Entry, ctx: dict[str, Any], records: list[Record]) -> None:
    if entry.reads is None:
        returned = entry.service(context=ctx)
    else:
        returned = entry.service(**{key: ctx[key] for key in entry.reads if key in ctx})
    keys: tuple[str, ...] = ()
    if isinstance(returned, dict):
        ctx.update(returned)
        keys = tuple(returned)
    records.append((entry.name, keys))


def model_seq(seq: Seq, ctx: dict[str, Any], records: list[Record]) -> None:
    for position, node in enumerate(seq):
        if isinstance(node, StepNode):
            model_step(node.entry, ctx, records)
        elif isinstance(node, SubNode):
            model_seq(node.seq, ctx, records)
        elif isinstance(node, AroundNode):
            slot = len(records)
            records.append((node.entry.name, ()))  # records are in the order steps start
            rest = seq[position + 1 :]
            returned = node.entry.logic(ctx, lambda rest=rest: model_seq(rest, ctx, records))
            if isinstance(returned, dict):
                ctx.update(returned)
                records[slot] = (node.entry.name, tuple(returned))
            return
        else:
            value = ctx[node.key]
            branches = dict(node.branches)
            if value in branches:
                model_seq(branches[value] or (), ctx, records)
            elif not isinstance(node.default, str):
                model_seq(node.default, ctx, records)
            else:
                raise ModelForkError(node.key, value)


def model_outcome(seq: Seq, given: dict[str, Any]) -> tuple[Any, ...]:
    ctx = dict(given)
    try:
        model_seq(seq, ctx, [])
    except ModelForkError as error:
        return ("no branch", error.key, error.value)
    return ("ok", ctx)


def model_records(seq: Seq, given: dict[str, Any]) -> list[Record]:
    records: list[Record] = []
    model_seq(seq, dict(given), records)
    return records


def model_succeeds(seq: Seq, given: dict[str, Any]) -> bool:
    return model_outcome(seq, given)[0] == "ok"


def outcome(flow: Flow, given: Any) -> tuple[Any, ...]:
    try:
        return ("ok", flow(given))
    except ForkError as error:
        return ("no branch", error.key, error.value)


# -- strategies --------------------------------------------------------------------------------

contexts = st.fixed_dictionaries(
    {key: st.integers(0, MOD - 1) for key in KEYS},
    optional={"bonus": st.integers(0, MOD - 1)},
)

step_nodes = st.sampled_from(POOL).map(StepNode)
around_nodes = st.sampled_from(AROUND_POOL).map(AroundNode)


def seqs(depth: int = 1, *, arounds: bool = False, min_size: int = 0, max_size: int = 4) -> st.SearchStrategy[Seq]:
    nodes = [step_nodes]
    if arounds:
        nodes.append(around_nodes)
    if depth > 0:
        nodes.append(forks(depth, arounds=arounds))
    return st.lists(st.one_of(*nodes), min_size=min_size, max_size=max_size).map(tuple)


def forks(depth: int, *, arounds: bool) -> st.SearchStrategy[ForkNode]:
    inner = seqs(depth - 1, arounds=arounds, max_size=2)
    return st.builds(
        ForkNode,
        key=st.sampled_from(KEYS),
        branches=st.dictionaries(st.integers(0, MOD - 1), st.one_of(st.none(), inner), min_size=1, max_size=3).map(
            lambda branches: tuple(branches.items())
        ),
        default=st.one_of(st.just(NO_DEFAULT), inner),
        style=st.sampled_from(["lt", "default_key", "fork_on"]),
    )


FEW = settings(max_examples=50, deadline=None)
FEWER = settings(max_examples=25, deadline=None)


# -- associativity -----------------------------------------------------------------------------


@FEW
@given(a=seqs(), b=seqs(), c=seqs())
def test_rshift_is_associative_structurally(a, b, c):
    left = (build(a) >> build(b)) >> build(c)
    right = build(a) >> (build(b) >> build(c))
    assert left == right
    assert hash(left) == hash(right)
    assert left.nodes == right.nodes


@FEW
@given(a=seqs(), b=seqs(), c=seqs(), given_context=contexts)
def test_rshift_is_associative_when_run(a, b, c, given_context):
    left = (build(a) >> build(b)) >> build(c)
    right = build(a) >> (build(b) >> build(c))
    expected = model_outcome(a + b + c, given_context)
    assert outcome(left, given_context) == expected
    assert outcome(right, given_context) == expected


@FEW
@given(a=seqs(max_size=1), b=seqs(), c=seqs(max_size=1), given_context=contexts)
def test_rshift_is_associative_with_bare_services_as_operands(a, b, c, given_context):
    # A lone service is used bare; plain functions have no >>, so the middle one is a flow.
    middle = build(b)
    left = (operand(a) >> middle) >> operand(c)
    right = operand(a) >> (middle >> operand(c))
    assert left == right
    assert outcome(left, given_context) == outcome(right, given_context) == model_outcome(a + b + c, given_context)


@FEW
@given(a=seqs(), b=seqs(), c=seqs())
def test_composition_equals_the_flat_flow(a, b, c):
    assert build(a) >> build(b) >> build(c) == build(a + b + c)


@FEW
@given(a=seqs(), fork=forks(2, arounds=False))
def test_lt_fork_equals_rshift_fork_on(a, fork):
    branches = {value: build_branch(branch) for value, branch in fork.branches}
    assert (build(a) < (fork.key, branches)) == build(a) >> fork_on(fork.key, branches)


def test_flow_constructor_keeps_a_later_around_service_to_its_own_flow():
    # Flow(a, b, c) is Flow(a) >> b >> c: the around service of b wraps b's steps only.
    wrapped = CountAfter() >> spread
    assert Flow(bump, wrapped, mirror) == Flow(bump) >> wrapped >> mirror


@FEW
@given(a=seqs(arounds=True, min_size=1), b=seqs(arounds=True), c=seqs(arounds=True), given_context=contexts)
def test_flow_constructor_equals_rshift(a, b, c, given_context):
    flow = Flow(build(a), build(b), build(c))
    assert flow == build(a) >> build(b) >> build(c)
    assert outcome(flow, given_context) == model_outcome(compose(compose(a, b), c), given_context)


def test_flow_constructor_seals_a_flow_after_an_empty_first_argument():
    wrapped = CountAfter() >> spread
    assert Flow(Flow(), wrapped) == Flow() >> wrapped
    given_context = {"k0": 0, "k1": 1, "k2": 0, "k3": 0}
    assert (Flow(Flow(), wrapped) >> mirror)(given_context) == (Flow() >> wrapped >> mirror)(given_context)


# -- around services in compositions --------------------------------------------------------------


@FEW
@given(a=seqs(arounds=True), b=seqs(arounds=True), c=seqs(arounds=True), given_context=contexts)
def test_around_service_wraps_only_the_rest_of_its_own_flow(a, b, c, given_context):
    left = (build(a) >> build(b)) >> build(c)
    right = build(a) >> (build(b) >> build(c))
    assert outcome(left, given_context) == model_outcome(compose(compose(a, b), c), given_context)
    assert outcome(right, given_context) == model_outcome(compose(a, compose(b, c)), given_context)


@FEW
@given(a=seqs(arounds=True), b=seqs(arounds=True), given_context=contexts)
def test_run_records_steps_in_start_order_with_around_services(a, b, given_context):
    tree = compose(a, b)
    run = (build(a) >> build(b)).run(given_context)
    if model_succeeds(tree, given_context):
        assert run.succeeded
        assert [(record.name, record.keys) for record in run.steps] == model_records(tree, given_context)
    else:
        assert isinstance(run.error, ForkError)


# -- immutability --------------------------------------------------------------------------------


def snapshot(flow: Flow, given_context: dict[str, Any]) -> tuple[Any, ...]:
    return (flow.nodes, repr(flow), flow.name, outcome(flow, given_context))


@FEW
@given(a=seqs(arounds=True), b=seqs(arounds=True), value=st.integers(0, MOD - 1), given_context=contexts)
def test_composing_never_changes_the_operands(a, b, value, given_context):
    fa, fb = build(a), build(b)
    before = (snapshot(fa, given_context), snapshot(fb, given_context))
    bigger = [
        fa >> fb,
        fb >> fa,
        fa >> fb >> fa,
        fa < ("k0", {value: fb}),
        fork_on("k1", {value: fa}, default=fb),
        Flow(fa, fb),
        fa.named("renamed"),
    ]
    for flow in bigger:
        outcome(flow, given_context)  # compiles and runs the bigger flow
    assert (snapshot(fa, given_context), snapshot(fb, given_context)) == before


@FEW
@given(shared=seqs(arounds=True), a=seqs(arounds=True), b=seqs(arounds=True), given_context=contexts)
def test_flow_reused_in_two_bigger_flows_works_in_both(shared, a, b, given_context):
    reused = build(shared)
    first = build(a) >> reused
    second = reused >> build(b)
    middle = build(a) >> reused >> build(b)
    assert outcome(first, given_context) == model_outcome(compose(a, shared), given_context)
    assert outcome(second, given_context) == model_outcome(compose(shared, b), given_context)
    assert outcome(middle, given_context) == model_outcome(compose(compose(a, shared), b), given_context)
    assert outcome(reused, given_context) == model_outcome(shared, given_context)


@FEW
@given(shared=seqs(arounds=True), key=st.sampled_from(KEYS), given_context=contexts)
def test_flow_reused_as_every_branch_of_a_fork(shared, key, given_context):
    reused = build(shared)
    flow = fork_on(key, dict.fromkeys(range(MOD), reused))
    assert outcome(flow, given_context) == model_outcome(shared, given_context)


# -- running -------------------------------------------------------------------------------------


@FEW
@given(tree=seqs(arounds=True), given_context=contexts)
def test_call_never_mutates_the_input(tree, given_context):
    copy = dict(given_context)
    outcome(build(tree), given_context)
    assert given_context == copy


@FEW
@given(tree=seqs(arounds=True), given_context=contexts)
def test_run_never_mutates_the_input(tree, given_context):
    copy = dict(given_context)
    build(tree).run(given_context)
    assert given_context == copy


@FEW
@given(tree=seqs(arounds=True), given_context=contexts)
def test_call_on_a_read_only_mapping_equals_call_on_a_dict(tree, given_context):
    flow = build(tree)
    assert outcome(flow, types.MappingProxyType(given_context)) == outcome(flow, given_context)


@FEW
@given(tree=seqs(depth=3, arounds=True), given_context=contexts)
def test_call_matches_the_model(tree, given_context):
    assert outcome(build(tree), given_context) == model_outcome(tree, given_context)


@FEW
@given(tree=seqs(arounds=True), given_context=contexts)
def test_run_context_equals_call_result_for_successful_runs(tree, given_context):
    flow = build(tree)
    run = flow.run(given_context)
    if model_succeeds(tree, given_context):
        assert run.succeeded
        assert run.context == flow(given_context)
    else:
        assert run.failed
        assert isinstance(run.error, ForkError)


@FEW
@given(tree=seqs(arounds=True), given_context=contexts)
def test_run_has_one_record_per_executed_step_with_the_keys_it_returned(tree, given_context):
    run = build(tree).run(given_context)
    if model_succeeds(tree, given_context):
        assert [(record.name, record.keys) for record in run.steps] == model_records(tree, given_context)


@FEWER
@given(tree=seqs(arounds=True), given_context=contexts)
def test_arun_gives_the_same_context_as_call(tree, given_context):
    flow = build(tree)
    if model_succeeds(tree, given_context):
        run = asyncio.run(flow.arun(given_context))
        assert run.succeeded
        assert run.context == flow(given_context)


# -- threads -------------------------------------------------------------------------------------

THREADS = 8


@FEWER
@given(tree=seqs(arounds=True), inputs=st.lists(contexts, min_size=THREADS, max_size=3 * THREADS))
def test_one_flow_called_from_eight_threads(tree, inputs):
    flow = build(tree)  # fresh: the threads also race to compile it
    start = threading.Barrier(THREADS)
    calls = itertools.count()

    def call(given_context):
        if next(calls) < THREADS:
            start.wait(timeout=5)  # the first eight calls start together
        return outcome(flow, given_context)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(call, inputs))
    assert results == [model_outcome(tree, given_context) for given_context in inputs]


def test_decorator_middleware_shared_by_threads_wraps_each_run():
    gate = threading.Barrier(THREADS)

    class Gate(DecoratorMiddleware):
        def __call__(self, context):
            gate.wait(timeout=5)  # every thread is inside the decorator at once
            self.app(context)
            return {"done": context["k1"]}

    flow = Flow(bump) >> Gate() >> spread
    inputs = [{"k0": n % MOD} for n in range(THREADS)]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(flow, inputs))
    for given_context, result in zip(inputs, results):
        k1 = (given_context["k0"] + 1) % MOD
        assert result == {"k0": given_context["k0"], "k1": k1, **spread(k1), "done": k1}
