"""``repr(flow)``: the structure of a flow, on one line when it fits, else as a tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service_flow._nodes import Fork, Node, Step
from service_flow._text import short_repr

if TYPE_CHECKING:
    from service_flow.flow import Flow

_WIDTH = 100
_MAX_NODES = 16  # per level; longer sequences show their ends around an ellipsis
_KEEP = 6
_MAX_BRANCHES = 12  # per fork; more are counted, not shown
_MAX_LEVELS = 6  # nesting shown; deeper flows show as an ellipsis


def _elide(nodes: tuple[Node, ...]) -> list[Node | str]:
    if len(nodes) <= _MAX_NODES:
        return list(nodes)
    hidden = len(nodes) - 2 * _KEEP
    return [*nodes[:_KEEP], f"… {hidden} more steps …", *nodes[-_KEEP:]]


def inline(flow: Flow, level: int = 0) -> str:
    """The flow as one expression: ``a >> b < ('key', {'x': c, DEFAULT: d})``."""
    if level > _MAX_LEVELS and flow.nodes:
        return "…"
    text = ""
    ends_with_fork = False
    for node in _elide(flow.nodes):
        if isinstance(node, Fork):
            branches = [label if b is None else f"{label}: {_branch(b, level + 1)}" for label, b in _branches(node)]
            fork = f"({node.key!r}, {{{', '.join(branches)}}})"
            text = f"fork_on{fork}" if not text else f"({text}) < {fork}" if ends_with_fork else f"{text} < {fork}"
            ends_with_fork = True
            continue
        part = (
            node
            if isinstance(node, str)
            else node.name
            if isinstance(node, Step)
            else f"({inline(node.flow, level + 1)})"
        )
        text = part if not text else f"({text}) >> {part}" if ends_with_fork else f"{text} >> {part}"
        ends_with_fork = False
    return text or "Flow()"


def _branch(flow: Flow, level: int) -> str:
    return inline(flow, level) if flow.nodes else "None"


def _branches(fork: Fork) -> list[tuple[str, Flow | None]]:
    """(label, branch) pairs of *fork*, the default last; a long list is cut short."""
    pairs: list[tuple[str, Flow | None]] = [(short_repr(value, 40), branch) for value, branch in fork.branches.items()]
    if fork.default is not None:
        pairs.append(("DEFAULT", fork.default))
    if len(pairs) > _MAX_BRANCHES:
        hidden = len(pairs) - _MAX_BRANCHES + 1
        pairs = [*pairs[: _MAX_BRANCHES - 1], (f"… {hidden} more branches", None)]
    return pairs


def _tree(flow: Flow, indent: str, level: int = 0) -> list[str]:
    if level > _MAX_LEVELS:
        return [f"{indent}…"]
    lines = []
    for position, node in enumerate(_elide(flow.nodes)):
        joint = "" if position == 0 else ">> "
        if isinstance(node, str):
            lines.append(f"{indent}{node}")
        elif isinstance(node, Step):
            lines.append(f"{indent}{joint}{node.name}")
        elif isinstance(node, Fork):
            lines.append(f"{indent}{'fork_on' if position == 0 else '< '}({node.key!r}, {{")
            for label, branch in _branches(node):
                one = (
                    f"{indent}    {label}: {_branch(branch, level + 1)},"
                    if branch is not None
                    else f"{indent}    {label}"
                )
                if branch is None or len(one) <= _WIDTH:
                    lines.append(one)
                else:
                    lines.append(f"{indent}    {label}:")
                    lines.extend(_tree(branch, indent + "        ", level + 1))
            lines.append(f"{indent}}})")
        else:
            lines.append(f"{indent}{joint}(")
            lines.extend(_tree(node.flow, indent + "    ", level + 1))
            lines.append(f"{indent})")
    return lines


def render(flow: Flow) -> str:
    """The ``repr`` of *flow*."""
    label = f" {flow.name!r}" if flow._name is not None else ""  # noqa: SLF001 - a private view
    one = f"<Flow{label}: {inline(flow)}>"
    if len(one) <= _WIDTH:
        return one
    return "\n".join([f"<Flow{label}:", *_tree(flow, "    "), ">"])
