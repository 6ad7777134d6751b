"""Flows: services composed with ``>>`` (in sequence) and ``<`` (forks).

A `Flow` is an immutable sequence of nodes: a `Step` (one service), a `Fork` (branches
picked by a context value) or a `SubFlow` (a flow kept whole inside another).  The
operators build new flows and never change their operands, so one flow can be a part
of many bigger flows and be shared between threads.  Running a flow compiles it, once,
into a plan that does only the lookups, the calls and the merges.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from service_flow import _log
from service_flow._compile import compile_flow
from service_flow._nodes import DEFAULT, MAX_DEPTH, FlowBase, Fork, Node, Step, SubFlow, depth_of, steps_of, too_deep
from service_flow._plan import Plan, as_context, now
from service_flow._render import render
from service_flow._spec import spec_of
from service_flow._text import check_name, listing, short_repr
from service_flow.exceptions import FlowDefinitionError, FlowError, InvalidInput
from service_flow.run import RUN_NUMBERS, Records, Run, new_run
from service_flow.validate import Validation, validate

make_run = object.__new__  # Run(...) without the cost of calling __init__

if TYPE_CHECKING:
    import os
    from pathlib import Path

__all__ = ["DEFAULT", "MAX_DEPTH", "Flow", "Fork", "Node", "Step", "SubFlow", "fork_on"]

#: The longest name a flow makes of its steps' names (one given with `named` is kept whole).
_MAX_NAME: Final = 100

# Plans are compiled rarely: one lock for all flows keeps a flow small to build.
_COMPILE_LOCK = threading.Lock()


def _as_flow(obj: object, *, role: str) -> Flow:
    if isinstance(obj, Flow):
        return obj
    if obj is None:
        return Flow()
    if isinstance(obj, tuple):
        msg = f"{role} is a tuple {short_repr(obj)}; a fork is written `step < (key, {{value: branch}})`"
        raise FlowDefinitionError(msg)
    if not callable(obj):
        msg = f"{role} must be a flow, a service or None, got {short_repr(obj)}"
        raise FlowDefinitionError(msg)
    return Flow(obj)


def _fork_node(spec: object, default_branch: object = None) -> Fork:
    if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], Mapping)):  # noqa: PLR2004
        msg = (
            f"a fork is written `flow < (key, {{value: branch, ...}})`, got {short_repr(spec)}; "
            "to compare flows use ==, and note that `a < b < c` is a chained comparison"
        )
        raise FlowDefinitionError(msg)
    key, branches = spec
    check_name(key, "a fork's key")
    if not branches and default_branch is None:
        msg = f"the fork on {key!r} has no branches"
        raise FlowDefinitionError(msg)
    default: Flow | None = None
    named: dict[Any, Flow] = {}
    try:
        items = list(branches.items())
        if default_branch is not None:
            items.append((DEFAULT, default_branch))
    except Exception as error:
        msg = f"the branches of the fork on {key!r} cannot be read: {type(error).__name__}: {error}"
        raise FlowDefinitionError(msg) from error
    for value, branch in items:
        if value is DEFAULT:
            default = _as_flow(branch, role=f"the default branch of the fork on {key!r}")
            continue
        flow = _as_flow(branch, role=f"branch {short_repr(value)} of the fork on {key!r}")
        try:
            named[value] = flow
        except Exception as error:  # unhashable, or a __hash__/__eq__ that raises
            msg = (
                f"the fork on {key!r} cannot have {short_repr(value)} as a branch's value: "
                f"it cannot be hashed ({type(error).__name__})"
            )
            raise FlowDefinitionError(msg) from error
    return Fork(key, named, default)


def fork_on(key: str, branches: Mapping[Any, Any], *, default: object = None) -> Flow:
    """A flow that starts with a fork on *key* (a fork needs no step before it).

    ``fork_on("payment", {"card": charge, "invoice": send_invoice}, default=refuse)`` is
    the flow ``< ("payment", {...})`` would append.  Branches are flows, services or
    ``None`` (do nothing); ``default`` (or a `DEFAULT` key) is taken for any other value.
    """
    return Flow(nodes=(_fork_node((key, branches), default),))


_NO_TRUTH = (
    "a Flow has no truth value. If this comes from `a < (key, branches) < ...` or "
    "`a < b < c`, Python read it as a chained comparison, which calls bool() on a flow: "
    "put each fork in parentheses, `(a < (key, branches)) >> next_step`. To test whether a "
    "variable holds a flow, write `flow is not None`."
)


class Flow(FlowBase):
    """An immutable composition of services, itself a service.

    Build one with ``>>`` and ``<`` on services (``Validate() >> Charge()``), or with
    ``Flow(step, ...)`` where the first step is a plain function.  Run it with
    ``flow(context)`` (the final context), ``flow.run(context)`` (a `Run` with a record
    of every step) or ``await flow.arun(context)``.

    Python's precedence makes ``a >> b < (key, branches)`` mean
    ``(a >> b) < (key, branches)``: the fork comes after ``b``.  Compose after a fork
    with parentheses: ``(a < (key, branches)) >> c``.
    """

    __slots__ = (
        "__weakref__",
        "_arounds",
        "_async",
        "_async_entry",
        "_built",
        "_call_plan",
        "_depth",
        "_left",
        "_name",
        "_plans",
        "_right",
        "_run_plan",
    )

    def __init__(
        self,
        *steps: Callable[..., Any],
        name: str | None = None,
        nodes: tuple[Node, ...] = (),
    ) -> None:
        try:
            built = list(nodes)
        except TypeError as error:
            msg = f"Flow(nodes=...) takes a tuple of Step, Fork and SubFlow nodes, got {short_repr(nodes)}"
            raise FlowDefinitionError(msg) from error
        for node in built:
            given: object = node  # callers without type checking pass anything
            if not isinstance(given, (Step, Fork, SubFlow)):
                msg = f"Flow(nodes=...) takes Step, Fork and SubFlow nodes, got {short_repr(node)}"
                raise FlowDefinitionError(msg)
        for position, step in enumerate(steps):
            # As with >>, a flow after the first argument keeps its around services to itself.
            built.extend(_nodes_of(step, sealed=bool(nodes) or position > 0))
        depth, arounds = depth_of(built)
        if depth > MAX_DEPTH:
            raise too_deep(depth, "this flow")
        self._setup(tuple(built), None, (), None if name is None else check_name(name, "a flow's name"))
        self._depth = depth
        self._arounds = arounds

    def _setup(
        self, built: tuple[Node, ...] | None, left: Flow | None, right: tuple[Node, ...], name: str | None
    ) -> None:
        # A flow made by `>>` or `<` holds its left operand and the nodes it adds, and
        # joins them into one tuple the first time its nodes are read: a chain of n `>>`
        # costs O(n), where copying the nodes at each step would cost O(n²).
        self._built = built
        self._left = left
        self._right = right
        self._name = name
        self._async: bool | None = None
        self._plans: dict[tuple[bool, bool, bool], Plan] = {}
        # The sync plans, once compiled, for the shortest path from a call to the plan.
        self._call_plan: Plan | None = None
        self._run_plan: Plan | None = None
        self._async_entry: Callable[[dict[str, Any]], Any] | None = None

    def _then(self, right: tuple[Node, ...], shape: tuple[int, int], what: Callable[[], str]) -> Flow:
        """A new flow: this one's nodes, then *right* of *shape* (neither operand changes)."""
        depth, arounds = shape
        total = max(self._depth, self._arounds + depth)
        if total > MAX_DEPTH:
            raise too_deep(total, what())
        flow = Flow.__new__(Flow)
        flow._setup(None, self, right, None)  # noqa: SLF001
        flow._depth = total  # noqa: SLF001
        flow._arounds = self._arounds + arounds  # noqa: SLF001
        return flow

    def _join(self) -> tuple[Node, ...]:
        parts: list[tuple[Node, ...]] = []
        flow = self
        while True:
            built = flow._built
            if built is not None:
                break
            left = flow._left
            if left is None:  # another thread joined it meanwhile (it sets _built first)
                built = flow._built
                assert built is not None  # noqa: S101
                break
            parts.append(flow._right)
            flow = left
        parts.append(built)
        nodes = tuple(itertools.chain.from_iterable(reversed(parts)))
        self._built = nodes
        # Let the intermediate flows go. `_right` stays: a thread walking this chain may
        # have read the old `_left` and read `_right` next, and must find this flow's nodes.
        self._left = None
        return nodes

    @classmethod
    def _from_left_operand(cls, obj: object) -> Flow:
        if isinstance(obj, tuple):
            msg = (
                f"a fork tuple {short_repr(obj)} cannot be the left operand of >>: in "
                "`a < (key, branches) >> b`, Python applies >> first. Write "
                "`(a < (key, branches)) >> b`"
            )
            raise FlowDefinitionError(msg)
        return _as_flow(obj, role="the left operand of >>")

    # -- structure ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The flow's name in errors and logs: the one given, or one made of its steps."""
        if self._name is not None:
            return self._name
        nodes = self.nodes
        names = [node.name for node in (nodes if len(nodes) <= 3 else (nodes[0], nodes[-1]))]  # noqa: PLR2004
        if len(nodes) > 3:  # noqa: PLR2004
            names.insert(1, "…")
        name = " >> ".join(names) or "empty flow"
        # Flows kept whole inside one another make names of names: keep them short.
        return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 1] + "…"

    @property
    def __service_flow_name__(self) -> str:
        """The flow's name, when it is a step of another flow."""
        return self.name

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The top-level nodes, in order."""
        built = self._built
        return self._join() if built is None else built

    def named(self, name: str) -> Flow:
        """The same flow under another name (for errors, logs and diagrams)."""
        flow = Flow.__new__(Flow)
        flow._setup(self.nodes, None, (), check_name(name, "a flow's name"))  # noqa: SLF001
        flow._depth = self._depth  # noqa: SLF001
        flow._arounds = self._arounds  # noqa: SLF001
        return flow

    def iter_steps(self) -> Iterator[Step]:
        """Every `Step` of the flow, depth first, branches and sub-flows included."""
        return steps_of(self.nodes)

    @property
    def is_async(self) -> bool:
        """Whether any step, in any branch, is async (then calling it gives an awaitable)."""
        if self._async is None:
            self._async = any(step.spec.is_async for step in self.iter_steps())
        return self._async

    def _has_open_around(self) -> bool:
        return self._arounds > 0

    # -- composition -------------------------------------------------------------

    def __rshift__(self, other: Callable[..., Any]) -> Flow:
        try:
            if isinstance(other, Flow) and not other._arounds:  # spliced in
                return self._then(other.nodes, (other._depth, 0), lambda: f"flow {other.name!r}")
            right = _nodes_of(other, sealed=True)  # one node
            return self._then(right, depth_of(right), lambda: right[0].name)
        except FlowDefinitionError as error:
            error.flow = error.flow or self.name  # the flow it was being added to
            raise

    def __rrshift__(self, other: Callable[..., Any]) -> Flow:
        return Flow._from_left_operand(other) >> self

    def __lt__(self, spec: tuple[str, Mapping[Any, Any]]) -> Flow:
        try:
            fork = _fork_node(spec)
            return self._then((fork,), (fork.depth, 0), lambda: fork.name)
        except FlowDefinitionError as error:
            error.flow = error.flow or self.name
            raise

    def __bool__(self) -> bool:
        raise FlowDefinitionError(_NO_TRUTH)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Flow) and other.nodes == self.nodes and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.nodes)

    def __reduce__(self) -> tuple[Any, ...]:
        # Flows travel to worker processes (process pools, Dask, Celery): send the
        # structure and the name; plans are compiled again where they run.
        return (_restore_flow, (self.nodes, self._name))

    def __repr__(self) -> str:
        return render(self)

    # -- running -----------------------------------------------------------------

    def _plan(self, *, aio: bool, record: bool, trace: bool = False) -> Plan:
        plan = self._plans.get((aio, record, trace))
        if plan is None:
            with _COMPILE_LOCK:
                plan = self._plans.get((aio, record, trace))
                if plan is None:
                    plan = compile_flow(self, aio=aio, record=record, trace=trace)
                    self._plans[aio, record, trace] = plan
        return plan

    def __call__(self, context: Mapping[str, Any] | None = None) -> Any:
        """Run the flow on a copy of *context* and return the final context (a dict).

        The caller's mapping is not changed.  A flow holding an async service returns
        an awaitable instead, as the original service-flow did.  Errors propagate, with
        the flow and step named on `FlowError` (and in a note on other exceptions); an
        input that is not a mapping (nor ``None``, the empty input) raises `InvalidInput`.
        """
        plan = self._call_plan
        if plan is None:
            entry = self._async_entry
            if entry is None and self.is_async:
                entry = self._async_entry = self._plan(aio=True, record=False).entry
            if entry is not None:
                ctx = context.copy() if type(context) is dict else as_context(context, self)
                # The async entry names the failing step itself and returns the context.
                return entry(ctx)
            plan = self._call_plan = self._plan(aio=False, record=False)
        ctx = context.copy() if type(context) is dict else as_context(context, self)
        try:
            plan.entry(ctx)
        except BaseException as error:
            plan.annotate(error)
            raise
        return ctx

    def run(self, context: Mapping[str, Any] | None = None) -> Run:
        """Run the flow and return a `Run`: status, final context, step records, error.

        `StopFlow` gives a *stopped* run and any other exception a *failed* one instead
        of propagating (``KeyboardInterrupt`` and ``SystemExit`` still propagate).  An
        input that is not a mapping (a list, a string, a number: a JSON body that is not
        an object) gives a failed run whose error is an `InvalidInput` naming it, with no
        step run; ``None`` is the empty input.  A flow with async services must use `arun`.
        """
        plan = self._run_plan
        if plan is None:
            if self.is_async:
                names = listing(step.name for step in self.iter_steps() if step.spec.is_async)
                msg = f"flow {self.name!r} has async services ({names}): use `await flow.arun(context)`"
                raise FlowError(msg, flow=self.name)
            plan = self._run_plan = self._plan(aio=False, record=True)
        if type(context) is dict:
            ctx = context.copy()
        else:
            try:
                ctx = as_context(context, self)
            except InvalidInput as error:
                return _refused(plan, error)
        # _log.quiet(), written out: a function call is a tenth of a short run's overhead.
        if _log.cached is None:
            config = _log.CONFIG
            if config.is_configured and config.default_wrapper_class is not _log.quiet_class:
                return self._traced_run(plan, ctx)
        elif _log.debug_fixed is not False:
            return self._traced_run(plan, ctx)
        # Debug events are off: nothing to log unless it fails; numbered when first read.
        records: Records = []
        started = now()
        try:
            plan.entry(ctx, records)
        except Exception as error:  # noqa: BLE001 - a Run reports every failure
            return plan.finish(ctx, records, next(RUN_NUMBERS), started, error)
        except BaseException as error:
            plan.annotate(error)
            raise
        run = make_run(Run)
        run._state = (plan, 0, ctx, records, None, started, records[-1] if records else started)  # noqa: SLF001
        return run

    def _traced_run(self, plan: Plan, ctx: dict[str, Any]) -> Run:
        """`run` when debug events may be on: ask the logger, and trace the run if they are."""
        number = next(RUN_NUMBERS)
        started = now()
        records = plan.tracer(number, started)
        if records is None:
            records = []
        else:  # each step handed to the records as it ends, to log it
            plan = self._plan(aio=False, record=True, trace=True)
        try:
            plan.entry(ctx, records)
        except Exception as error:  # noqa: BLE001 - a Run reports every failure
            return plan.finish(ctx, records, number, started, error)
        except BaseException as error:
            plan.annotate(error)
            raise
        if type(records) is list:  # not tracing after all: nothing to log
            return new_run((plan, number, ctx, records, None, started, records[-1] if records else started))
        return plan.finish(ctx, records, number, started, None)

    async def arun(self, context: Mapping[str, Any] | None = None) -> Run:
        """Run the flow in the event loop and return its `Run` (see `run`).

        Sync services run inline, those marked ``blocking`` in a worker thread.
        """
        plan = self._plan(aio=True, record=True)
        try:
            ctx = as_context(context, self)
        except InvalidInput as error:
            return _refused(plan, error)
        number = next(RUN_NUMBERS)
        started = now()
        records = None if _log.quiet() else plan.tracer(number, started)
        if records is not None:
            plan = self._plan(aio=True, record=True, trace=True)
        if records is None:
            records = []
        try:
            await plan.entry(ctx, records)
        except Exception as error:  # noqa: BLE001 - a Run reports every failure
            return plan.finish(ctx, records, number, started, error)
        except BaseException as error:
            plan.annotate(error)
            raise
        if type(records) is list:
            return new_run((plan, number, ctx, records, None, started, records[-1] if records else started))
        return plan.finish(ctx, records, number, started, None)

    def validate(self, given: Iterable[str] | Mapping[str, Any] = (), *, strict: bool = False) -> Validation:
        """Check, without running anything, that every step gets the keys it requires.

        *given* are the keys the input will hold.  Every path through every fork is
        followed; all problems are raised together in one `ValidationError`.  Steps
        that do not declare ``provides`` are trusted to provide what is missing after
        them, and named in a `ValidationWarning`; with ``strict=True`` each of them is
        a problem instead, and trusted with nothing.
        """
        return validate(self, given, strict=strict)

    def to_mermaid(self, highlight: Run | None = None) -> str:
        """The flow as a Mermaid flowchart; *highlight*, a `Run`, marks its path (see `service_flow.graph`)."""
        from service_flow import graph  # it imports this module (and diagrams are drawn rarely)

        return graph.to_mermaid(self, highlight)

    def to_dot(self, highlight: Run | None = None) -> str:
        """The flow as a Graphviz DOT digraph; *highlight*, a `Run`, marks its path."""
        from service_flow import graph

        return graph.to_dot(self, highlight)

    def render(self, path: str | os.PathLike[str], format: str | None = None, highlight: Run | None = None) -> Path:  # noqa: A002
        """Draw the flow into *path*, as ``flow.svg`` (the ``graph`` extra and Graphviz); see `graph.render`."""
        from service_flow import graph

        return graph.render(self, path, format, highlight)


def _refused(plan: Plan, error: InvalidInput) -> Run:
    """The failed `Run` of an input that is not a mapping: no step ran, the context is empty."""
    return plan.finish({}, [], next(RUN_NUMBERS), now(), error)


def _restore_flow(nodes: tuple[Node, ...], name: str | None) -> Flow:
    return Flow(nodes=nodes, name=name)


def _nodes_of(obj: object, *, sealed: bool = False) -> tuple[Node, ...]:
    if isinstance(obj, Flow):
        if sealed and obj._has_open_around():  # noqa: SLF001
            return (SubFlow(obj),)
        return obj.nodes
    if isinstance(obj, tuple):
        msg = (
            f"cannot add the tuple {short_repr(obj)} to a flow with >>; "
            "a fork is written `flow < (key, {value: branch})`"
        )
        raise FlowDefinitionError(msg)
    return (Step(spec_of(obj)),)
