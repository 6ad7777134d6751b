"""Static checks of a flow: every step gets the keys it requires, on every path.

`Flow.validate` calls `validate`.  Nothing runs: the check walks the flow with the set
of keys known to be present, adding what each step declares it ``provides``, following
each branch of each fork separately.  A step that declares nothing may provide
anything, so a missing key after it is assumed to come from it (and said in a
`ValidationWarning`), never reported as an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service_flow._nodes import Fork, Node, Step, steps_of
from service_flow._text import listing, short_repr
from service_flow.exceptions import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from service_flow._spec import Spec
    from service_flow.flow import Flow

__all__ = ["Validation", "ValidationWarning", "validate"]

# Beyond this many distinct paths, paths are merged (keys: the intersection) so that a
# flow of many forks cannot explode the check.
_MAX_PATHS = 64


class ValidationWarning(UserWarning):
    """`Flow.validate` had to trust steps that do not declare what they provide."""


@dataclass(frozen=True)
class Validation:
    """What `Flow.validate` learnt of a flow that passed."""

    guaranteed: frozenset[str]
    """Keys present at the end of every path (given or declared by a step)."""
    unchecked: tuple[str, ...]
    """Steps that do not declare ``provides``."""
    assumed: tuple[tuple[str, str], ...] = field(default=())
    """(step, key) pairs where a key was assumed to come from an undeclared step."""


class _Path:
    """One way through the flow so far: its branch label and the keys present on it.

    ``keys`` is shared with the paths a fork made from the same path until one of them
    adds a key (copy on write), so that a long chain of steps costs O(1) per key and the
    whole check is linear in the size of the flow.
    """

    __slots__ = ("keys", "label", "shared", "trusting")

    def __init__(self, label: str, keys: set[str], *, shared: bool, trusting: bool) -> None:
        self.label = label
        self.keys = keys
        self.shared = shared
        self.trusting = trusting  # an undeclared step came before: missing keys are assumed

    def add(self, keys: Iterable[str]) -> None:
        if self.shared:
            self.keys = set(self.keys)
            self.shared = False
        self.keys.update(keys)


class _Checker:
    def __init__(self, flow: Flow, *, strict: bool) -> None:
        self.flow = flow
        self.strict = strict
        # Dicts as ordered sets: each problem, assumption and step named once.
        self.problems: dict[str, None] = {}
        self.assumed: dict[tuple[str, str], None] = {}
        self.undeclared: dict[str, None] = {}

    def problem(self, text: str, path: _Path | None = None) -> None:
        line = f"{text} (on branch {path.label})" if path is not None and path.label else text
        self.problems.setdefault(line)

    def need(self, who: str, keys: Iterable[str], paths: Sequence[_Path]) -> None:
        for path in paths:
            for key in keys:
                if key in path.keys:
                    continue
                if path.trusting:
                    self.assumed.setdefault((who, key))
                else:
                    self.problem(f"{who} needs {key!r}, which is neither given nor provided by an earlier step", path)

    def after(self, spec: Spec, paths: list[_Path]) -> list[_Path]:
        if spec.provides is None:
            self.undeclared.setdefault(spec.name)
            if self.strict:
                self.problem(f"{spec.name} does not declare `provides` (strict validation trusts no step)")
            else:
                for path in paths:
                    path.trusting = True
        elif spec.provides:
            for path in paths:
                path.add(spec.provides)
        return paths

    def walk(self, nodes: Sequence[Node], paths: list[_Path]) -> list[_Path]:
        for position, node in enumerate(nodes):
            if isinstance(node, Step):
                spec = node.spec
                self.need(spec.name, spec.requires, paths)
                if spec.around:
                    rest = nodes[position + 1 :]
                    if not spec.is_async and any(_is_async(n) for n in rest):
                        inner = [s.name for n in rest for s in _steps(n) if s.spec.is_async]
                        self.problem(
                            f"around service {spec.name} is synchronous but wraps async steps ({listing(inner)})"
                        )
                    return self.after(spec, self.walk(rest, paths))
                paths = self.after(spec, paths)
            elif isinstance(node, Fork):
                self.need(f"the fork on {node.key!r}", (node.key,), paths)
                branches: list[tuple[str, Flow]] = [
                    (f"{node.key}={short_repr(value, 40)}", flow) for value, flow in node.branches.items()
                ]
                if node.default is not None:
                    branches.append((f"{node.key}=DEFAULT", node.default))
                merged: list[_Path] = []
                for label, branch in branches:
                    entering = [
                        _Path(f"{p.label} > {label}" if p.label else label, p.keys, shared=True, trusting=p.trusting)
                        for p in paths
                    ]
                    merged.extend(self.walk(branch.nodes, entering))
                paths = _dedupe(merged)
            else:
                paths = self.walk(node.flow.nodes, paths)
        return paths


def _is_async(node: Node) -> bool:
    if isinstance(node, Step):
        return node.spec.is_async
    if isinstance(node, Fork):
        return any(flow.is_async for flow in (*node.branches.values(), node.default) if flow is not None)
    return node.flow.is_async


def _steps(node: Node) -> Iterable[Step]:
    return steps_of((node,))


def _dedupe(paths: list[_Path]) -> list[_Path]:
    # Paths that share their keys' set are equal without comparing the sets.
    by_identity: dict[tuple[int, bool], _Path] = {}
    for path in paths:
        by_identity.setdefault((id(path.keys), path.trusting), path)
    if len(by_identity) == 1:
        unique = list(by_identity.values())
    else:
        seen: dict[tuple[frozenset[str], bool], _Path] = {}
        for path in by_identity.values():
            seen.setdefault((frozenset(path.keys), path.trusting), path)
        unique = list(seen.values())
    if len(unique) <= _MAX_PATHS:
        return unique
    # Merge the paths that trust undeclared steps apart from those that do not, so that
    # one undeclared step on one path cannot excuse a missing key on all the others.
    merged = []
    for group in ([p for p in unique if not p.trusting], [p for p in unique if p.trusting]):
        if group:
            keys = set.intersection(*(p.keys for p in group))
            merged.append(_Path("one of several paths", keys, shared=False, trusting=group[0].trusting))
    return merged


def validate(flow: Flow, given: Iterable[str] | Mapping[str, Any] = (), *, strict: bool = False) -> Validation:
    """Check *flow* against the keys *given*; see `Flow.validate`."""
    checked: object = given  # callers without type checking pass anything
    if isinstance(given, str):
        given = (given,)
    elif not isinstance(checked, (Iterable, Mapping)):
        msg = f"validate(given=...) takes the keys the input will hold (a set or a mapping), got {short_repr(given)}"
        raise ConfigurationError(msg)
    flag: object = strict  # callers without type checking pass anything
    if type(flag) is not bool:
        msg = f"validate(strict=...) takes True or False, got {short_repr(strict)}"
        raise ConfigurationError(msg)
    try:
        keys = set(given)
    except TypeError as error:  # a key that cannot be hashed
        msg = f"validate(given=...) takes the keys the input will hold, which must be hashable: {error}"
        raise ConfigurationError(msg) from error
    checker = _Checker(flow, strict=strict)
    ends = checker.walk(flow.nodes, [_Path("", keys, shared=False, trusting=False)])
    if checker.problems:
        problems = list(checker.problems)
        count = len(problems)
        lines = "\n".join(f"  - {line}" for line in problems)
        message = f"flow {flow.name!r} has {count} problem{'s' if count > 1 else ''}:\n{lines}"
        raise ValidationError(message, problems=problems, flow=flow.name)
    if checker.assumed:
        assumed = listing(f"{key!r} for {who}" for who, key in checker.assumed)
        warnings.warn(
            f"flow {flow.name!r}: assumed {assumed} to be provided by steps that do not declare "
            f"`provides`: {listing(checker.undeclared)}",
            ValidationWarning,
            stacklevel=3,
        )
    guaranteed = frozenset(set.intersection(*(p.keys for p in ends))) if ends else frozenset(keys)
    return Validation(guaranteed, tuple(checker.undeclared), tuple(checker.assumed))
