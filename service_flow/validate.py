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

from service_flow.exceptions import ValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from service_flow._spec import Spec
    from service_flow.flow import Flow, Node

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


@dataclass(frozen=True)
class _Path:
    label: str
    keys: frozenset[str]
    undeclared: tuple[str, ...]


class _Checker:
    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.problems: list[str] = []
        self.assumed: list[tuple[str, str]] = []
        self.undeclared: list[str] = []

    def problem(self, text: str, path: _Path) -> None:
        line = f"{text} (on branch {path.label})" if path.label else text
        if line not in self.problems:
            self.problems.append(line)

    def need(self, who: str, keys: Iterable[str], paths: Sequence[_Path]) -> None:
        for path in paths:
            for key in keys:
                if key in path.keys:
                    continue
                if path.undeclared:
                    if (who, key) not in self.assumed:
                        self.assumed.append((who, key))
                else:
                    self.problem(f"{who} needs {key!r}, which is neither given nor provided by an earlier step", path)

    def after(self, spec: Spec, paths: Sequence[_Path]) -> list[_Path]:
        if spec.provides is None:
            if spec.name not in self.undeclared:
                self.undeclared.append(spec.name)
            return [_Path(p.label, p.keys, (*p.undeclared, spec.name)) for p in paths]
        return [_Path(p.label, p.keys | spec.provides, p.undeclared) for p in paths]

    def walk(self, nodes: Sequence[Node], paths: list[_Path]) -> list[_Path]:
        from service_flow.flow import Flow, Fork, Step  # flow imports us lazily

        for position, node in enumerate(nodes):
            if isinstance(node, Step):
                spec = node.spec
                self.need(spec.name, spec.requires, paths)
                if spec.around:
                    rest = nodes[position + 1 :]
                    if not spec.is_async:
                        inner = [s.name for s in Flow(nodes=tuple(rest)).iter_steps() if s.spec.is_async]
                        if inner:
                            self.problem(
                                f"around service {spec.name} is synchronous but wraps async steps ({', '.join(inner)})",
                                _Path("", frozenset(), ()),
                            )
                    return self.after(spec, self.walk(rest, paths))
                paths = self.after(spec, paths)
            elif isinstance(node, Fork):
                self.need(f"the fork on {node.key!r}", (node.key,), paths)
                branches: list[tuple[str, Flow]] = [
                    (f"{node.key}={value!r}", flow) for value, flow in node.branches.items()
                ]
                if node.default is not None:
                    branches.append((f"{node.key}=DEFAULT", node.default))
                merged: list[_Path] = []
                for label, branch in branches:
                    entering = [
                        _Path(f"{p.label} > {label}" if p.label else label, p.keys, p.undeclared) for p in paths
                    ]
                    merged.extend(self.walk(branch.nodes, entering))
                paths = _dedupe(merged)
            else:
                paths = self.walk(node.flow.nodes, paths)
        return paths


def _dedupe(paths: list[_Path]) -> list[_Path]:
    seen: dict[tuple[frozenset[str], tuple[str, ...]], _Path] = {}
    for path in paths:
        seen.setdefault((path.keys, path.undeclared), path)
    unique = list(seen.values())
    if len(unique) <= _MAX_PATHS:
        return unique
    # Merge the paths that trust undeclared steps apart from those that do not, so that
    # one undeclared step on one path cannot excuse a missing key on all the others.
    merged = []
    for group in ([p for p in unique if not p.undeclared], [p for p in unique if p.undeclared]):
        if group:
            keys = frozenset.intersection(*(p.keys for p in group))
            undeclared = tuple(dict.fromkeys(name for p in group for name in p.undeclared))
            merged.append(_Path("one of several paths", keys, undeclared))
    return merged


def validate(flow: Flow, given: Iterable[str] | Mapping[str, Any] = ()) -> Validation:
    """Check *flow* against the keys *given*; see `Flow.validate`."""
    checked: object = given  # callers without type checking pass anything
    if isinstance(given, str):
        given = (given,)
    elif not isinstance(checked, (Iterable, Mapping)):
        msg = f"validate(given=...) takes the keys the input will hold (a set or a mapping), got {given!r}"
        raise TypeError(msg)
    checker = _Checker(flow)
    ends = checker.walk(flow.nodes, [_Path("", frozenset(given), ())])
    if checker.problems:
        count = len(checker.problems)
        listing = "\n".join(f"  - {line}" for line in checker.problems)
        message = f"flow {flow.name!r} has {count} problem{'s' if count > 1 else ''}:\n{listing}"
        raise ValidationError(message, problems=checker.problems, flow=flow.name)
    if checker.assumed:
        assumed = ", ".join(f"{key!r} for {who}" for who, key in checker.assumed)
        warnings.warn(
            f"flow {flow.name!r}: assumed {assumed} to be provided by steps that do not declare "
            f"`provides`: {', '.join(checker.undeclared)}",
            ValidationWarning,
            stacklevel=3,
        )
    guaranteed = frozenset.intersection(*(p.keys for p in ends)) if ends else frozenset(given)
    return Validation(guaranteed, tuple(checker.undeclared), tuple(checker.assumed))
