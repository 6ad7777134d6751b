"""Replacing steps of a flow by fakes for the length of a ``with`` block: `stub`.

The flow object is not rebuilt and its structure does not change (``flow.nodes``,
``validate``, diagrams still show the real services): what changes is the plans it
runs.  On entry, a copy of the flow's node tree with the fakes in place of the targeted
steps is compiled, and the flow's plan caches are pointed at that copy's plans; on exit
(also when the block raises) the flow's own caches are put back.  A flow compiles its
plans once, so a stub costs one compilation per kind of run used inside the block and
nothing on the runs outside it.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from service_flow._nodes import Fork, Step, SubFlow
from service_flow._spec import spec_of
from service_flow._text import listing, short_repr
from service_flow.exceptions import ConfigurationError
from service_flow.flow import Flow

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from types import TracebackType

    from service_flow._nodes import Node
    from service_flow._plan import Plan
    from service_flow._spec import Spec

__all__ = ["stub"]

# Stubs change a shared object: one lock orders every install and restore.
_LOCK = threading.RLock()


@dataclasses.dataclass
class _Active:
    """The stubs active on one flow: its own caches, saved, and the layers, oldest first."""

    saved: tuple[Any, ...]
    layers: list[dict[int, Spec]]


# id(flow) -> its active stubs.  Keyed by id: flows compare by structure, and a flow
# being stubbed is kept alive by the stub holding it.
_ACTIVE: dict[int, _Active] = {}

_CACHES = ("_plans", "_call_plan", "_run_plan", "_async_entry", "_async")


class _Plans(dict):  # type: ignore[type-arg]
    """Stands in for a stubbed flow's plan cache: hands out the plans of its stubbed copy.

    ``Flow._plan`` asks ``get`` first; this never answers ``None``, so the flow never
    compiles (nor stores) a plan of its own while the stub is active.
    """

    __slots__ = ("stubbed",)

    def __init__(self, stubbed: Flow) -> None:
        super().__init__()
        self.stubbed = stubbed

    def get(self, key: tuple[bool, bool, bool], default: Any = None) -> Plan:  # noqa: ARG002
        """The stubbed copy's plan for *key* (``aio, record, trace``), compiled on first use."""
        aio, record, trace = key
        return self.stubbed._plan(aio=aio, record=record, trace=trace)  # noqa: SLF001


def _describe(target: object) -> str:
    if isinstance(target, str):
        return f"named {target!r}"
    if inspect.isclass(target):
        return f"of class {target.__qualname__}"
    return short_repr(target, 80)


def _matches(step: Step, target: object) -> bool:
    service = step.service
    if isinstance(target, str):
        return step.name == target
    if inspect.isclass(target):
        return service is target or isinstance(service, target)
    # A function made a service by @service is found by the function too.
    return service is target or getattr(service, "__service_flow_func__", None) is target


def _targets(flow: Flow, target: object) -> list[Spec]:
    found = [step.spec for step in flow.iter_steps() if _matches(step, target)]
    if not found:
        names = listing(dict.fromkeys(step.name for step in flow.iter_steps())) or "none"
        msg = f"stub(): no step of flow {flow.name!r} is {_describe(target)}; its steps: {names}"
        raise ConfigurationError(msg)
    return found


def _nothing() -> None:
    """A fake that does nothing (``stub(flow, target, None)``)."""


def _fake_spec(original: Spec, fake: object) -> Spec:
    """The spec the stubbed copy runs in place of *original*: the fake, under the step's name."""
    from service_flow.testing._recorder import Recorder  # a sibling of this module

    if isinstance(fake, Recorder):
        return fake._bind(original)  # noqa: SLF001 - takes what the real service would
    spec = spec_of(_nothing if fake is None else fake)
    return dataclasses.replace(spec, name=original.name)


def _swap(nodes: tuple[Node, ...], table: Mapping[int, Spec]) -> tuple[Node, ...]:
    swapped: list[Node] = []
    for node in nodes:
        if isinstance(node, Step):
            spec = table.get(id(node.spec))
            swapped.append(node if spec is None else Step(spec))
        elif isinstance(node, SubFlow):
            swapped.append(SubFlow(_copy(node.flow, table)))
        else:
            branches = {value: _copy(branch, table) for value, branch in node.branches.items()}
            default = None if node.default is None else _copy(node.default, table)
            swapped.append(Fork(node.key, branches, default))
    return tuple(swapped)


def _copy(flow: Flow, table: Mapping[int, Spec]) -> Flow:
    # Same name (the plans and runs report it), same nodes but for the swapped steps.
    return Flow(nodes=_swap(flow.nodes, table), name=flow.name)


def _install(flow: Flow, active: _Active) -> None:
    table: dict[int, Spec] = {}
    for layer in active.layers:  # a later stub of the same step wins
        table.update(layer)
    copy = _copy(flow, table)
    plans = _Plans(copy)
    # The shortcuts a run takes are filled here, not by the runs: a run assigning one
    # while the stub ends could leave a stubbed plan behind for good.
    if copy.is_async:
        caches: tuple[Any, ...] = (plans, None, None, plans.get((True, False, False)).entry, True)
    else:
        caches = (plans, plans.get((False, False, False)), plans.get((False, True, False)), None, False)
    for name, value in zip(_CACHES, caches):
        setattr(flow, name, value)


def _restore(flow: Flow, saved: tuple[Any, ...]) -> None:
    for name, value in zip(_CACHES, saved):
        setattr(flow, name, value)


class _Stub:
    """The context manager `stub` returns."""

    __slots__ = ("_entered", "_fakes", "_flow", "_layer", "_result")

    def __init__(self, flow: Flow, fakes: list[tuple[Any, Any]], result: Any) -> None:
        given: object = flow
        if not isinstance(given, Flow):
            msg = f"stub() takes a Flow first, got {short_repr(given)}"
            raise ConfigurationError(msg)
        self._flow = flow
        self._fakes = fakes
        self._result = result
        # Found and introspected now: a wrong target fails here, before anything changes.
        self._layer = {id(spec): _fake_spec(spec, fake) for target, fake in fakes for spec in _targets(flow, target)}
        self._entered = False

    def __enter__(self) -> Any:
        flow = self._flow
        with _LOCK:
            if self._entered:
                msg = f"this stub of flow {flow.name!r} is already active: call stub() again to stub it twice"
                raise ConfigurationError(msg)
            active = _ACTIVE.get(id(flow))
            if active is None:
                active = _ACTIVE[id(flow)] = _Active(tuple(getattr(flow, name) for name in _CACHES), [])
            active.layers.append(self._layer)
            try:
                _install(flow, active)
            except BaseException:
                self._leave()
                raise
            self._entered = True
        return self._result

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        with _LOCK:
            if self._entered:
                self._entered = False
                self._leave()

    def _leave(self) -> None:
        flow = self._flow
        active = _ACTIVE[id(flow)]
        # Stubs may end in any order (threads, tasks): remove this one, wherever it is.
        active.layers[:] = [layer for layer in active.layers if layer is not self._layer]
        if active.layers:
            _install(flow, active)
        else:
            del _ACTIVE[id(flow)]
            _restore(flow, active.saved)

    def __repr__(self) -> str:
        targets = ", ".join(_describe(target) for target, _ in self._fakes)
        return f"<stub of flow {self._flow.name!r}: {targets}{' (active)' if self._entered else ''}>"


_NO_FAKE: Any = object()


def stub(flow: Flow, target: Any, fake: Any = _NO_FAKE) -> AbstractContextManager[Any]:
    """Replace steps of *flow* by fakes inside a ``with`` block; the real ones come back after.

    ``stub(flow, target, fake)`` replaces one target, ``stub(flow, {target: fake, ...})``
    several.  A target is the service object, its class or its name, and every step it
    matches is replaced, in branches and sub-flows too; one that matches no step raises
    `ConfigurationError` listing the flow's steps.  The fake is bound by name like a
    service (its own signature says what it takes) and the step keeps its name in runs,
    errors and logs; a `Recorder` takes the parameters the real service would, and
    ``None`` does nothing.  ``with`` gives back the fake (the mapping of targets to fakes
    for several)::

        with stub(checkout, charge_card, Recorder(returns={"charge_id": "ch_1"})) as charge:
            run = checkout.run({"total": 12})
        charge.assert_called_once()

    The flow object is not rebuilt: ``flow(ctx)``, ``run``, ``arun`` and a `Driver`
    started inside the block run the fakes.  Stubs nest, the later one winning for a step
    both replace.  Limits: a stub changes the flow for every thread and task running it
    while it is active (as ``unittest.mock.patch`` does), it stubs the flow it is given
    (not a bigger flow built from it), and a flow sent to another process (a process
    pool, Celery, Dask) runs its real steps there.
    """
    if fake is _NO_FAKE:
        if not isinstance(target, Mapping):
            msg = f"stub() takes a target and its fake, or a mapping of targets to fakes; got only {short_repr(target)}"
            raise ConfigurationError(msg)
        fakes = dict(target)
        if not fakes:
            msg = "stub() got an empty mapping of targets to fakes"
            raise ConfigurationError(msg)
        return _Stub(flow, list(fakes.items()), target)
    return _Stub(flow, [(target, fake)], fake)
