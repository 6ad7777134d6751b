"""The nodes a flow is made of: `Step`, `Fork`, `SubFlow` and `When`.

A `Flow` is an immutable sequence of these nodes; the modules that walk flows (the plan
compiler, validation, rendering, diagrams) import them from here.  A node holds the
flows nested in it (a fork's branches, a sub-flow, a conditional step's body) and knows
how deeply it nests; it never runs anything.  `FlowBase` is what a node recognises a
nested flow by, so that this module needs nothing of `service_flow.flow`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Union

from service_flow._spec import Spec, spec_of
from service_flow._text import check_name, short_repr
from service_flow.exceptions import FlowDefinitionError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from service_flow.flow import Flow

__all__ = ["DEFAULT", "MAX_DEPTH", "FlowBase", "Fork", "Node", "Step", "SubFlow"]

#: How deeply a flow may nest: forks inside branches, around services wrapping the rest
#: of their chain, flows kept whole.  Each level is a nested call when the flow runs (an
#: around service three), so a deeper flow is refused when it is built, with
#: `FlowDefinitionError`, rather than failing with a `RecursionError` when it runs.
MAX_DEPTH: Final = 100


class FlowBase:
    """The base of `service_flow.Flow`: what a node takes as a nested flow."""

    __slots__ = ()


def too_deep(depth: int, what: str) -> FlowDefinitionError:
    """The error of a flow that would nest deeper than `MAX_DEPTH`."""
    msg = (
        f"{what} would nest the flow {depth} levels deep (forks inside branches, around services, "
        f"flows kept whole); at most {MAX_DEPTH} are supported"
    )
    return FlowDefinitionError(msg)


def depth_of(nodes: Iterable[Node]) -> tuple[int, int]:
    """(nesting depth, around services at the top level) of a sequence of nodes."""
    depth = arounds = 0
    for node in nodes:
        if isinstance(node, Step):
            if node.spec.around:
                arounds += 1
                depth = max(depth, arounds)
        else:
            depth = max(depth, arounds + node.depth)
    return depth, arounds


class _Default:
    """The key of a fork's default branch (see `DEFAULT`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"

    def __reduce__(self) -> str:
        return "DEFAULT"


#: Use as a key in a fork's branches for the branch taken when no other matches::
#:
#:     flow = check < ("country", {"FR": vat_fr, "DE": vat_de, DEFAULT: no_vat})
DEFAULT: Final = _Default()
# Pickles name it by its module: the one users import it from.
_Default.__module__ = "service_flow.flow"


class Step:
    """A node that calls one service: ``Step(service)``.  ``spec`` holds what was learnt of it at build."""

    __slots__ = ("spec",)

    def __init__(self, spec: Spec | Callable[..., Any]) -> None:
        # Built by hand, a step may be given its service: introspect it as >> would.
        self.spec = spec if isinstance(spec, Spec) else spec_of(spec)

    @property
    def service(self) -> Any:
        """The callable the user put in the flow."""
        return self.spec.service

    @property
    def name(self) -> str:
        """The service's name, as errors, logs and records show it."""
        return self.spec.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and other.spec.service is self.spec.service

    def __hash__(self) -> int:
        return id(self.spec.service)

    def __repr__(self) -> str:
        return f"Step({self.name})"


class Fork:
    """A node that runs one of several branches, chosen by the value of ``key``."""

    __slots__ = ("branches", "default", "depth", "key")

    def __init__(self, key: str, branches: Mapping[Any, Flow], default: Flow | None) -> None:
        self.key = check_name(key, "a fork's key")
        try:
            table = dict(branches)
        except Exception as error:
            msg = f"the branches of the fork on {key!r} cannot be read as a dict: {type(error).__name__}: {error}"
            raise FlowDefinitionError(msg) from error
        flows = [*table.values(), *(() if default is None else (default,))]
        for flow in flows:
            if not isinstance(flow, FlowBase):
                msg = f"a branch of the fork on {key!r} must be a Flow, got {short_repr(flow)}"
                raise FlowDefinitionError(msg)
        self.branches: Mapping[Any, Flow] = MappingProxyType(table)
        self.default = default
        #: How deeply the fork nests: one level for itself, plus its deepest branch.
        self.depth: int = 1 + max((flow._depth for flow in flows), default=0)  # noqa: SLF001
        if self.depth > MAX_DEPTH:
            raise too_deep(self.depth, f"the fork on {key!r}")

    @property
    def name(self) -> str:
        """How errors and records call this fork."""
        return f"fork on {self.key}"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Fork)
            and other.key == self.key
            and other.default == self.default
            and list(other.branches.items()) == list(self.branches.items())
        )

    def __hash__(self) -> int:
        return hash((Fork, self.key))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Fork, (self.key, dict(self.branches), self.default))

    def __repr__(self) -> str:
        return f"Fork({self.key!r}, {dict(self.branches)!r}, {self.default!r})"


class SubFlow:
    """A flow kept whole as one node of a bigger flow.

    Flows are spliced into one another, except a flow with an around service at its top
    level: its around service wraps only the rest of *that* flow, so it stays a unit.
    """

    __slots__ = ("depth", "flow")

    def __init__(self, flow: Flow) -> None:
        given: object = flow  # callers without type checking pass anything
        if not isinstance(given, FlowBase):
            msg = f"SubFlow takes a Flow, got {short_repr(given)}"
            raise FlowDefinitionError(msg)
        self.flow = flow
        #: How deeply the sub-flow nests: one level for itself, plus its own depth.
        self.depth: int = 1 + flow._depth  # noqa: SLF001
        if self.depth > MAX_DEPTH:
            raise too_deep(self.depth, f"flow {flow.name!r}")

    @property
    def name(self) -> str:
        """The inner flow's name."""
        return self.flow.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubFlow) and other.flow == self.flow

    def __hash__(self) -> int:
        return hash(self.flow)

    def __repr__(self) -> str:
        return f"SubFlow({self.flow!r})"


Node = Union[Step, Fork, SubFlow]


def steps_of(nodes: Iterable[Node]) -> Iterator[Step]:
    """Every `Step` of *nodes*, depth first, branches and sub-flows included."""
    for node in nodes:
        if isinstance(node, Step):
            yield node
        elif isinstance(node, SubFlow):
            yield from steps_of(node.flow.nodes)
        else:
            for branch in node.branches.values():
                yield from steps_of(branch.nodes)
            if node.default is not None:
                yield from steps_of(node.default.nodes)
