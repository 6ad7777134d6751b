r"""Diagrams of flows: Mermaid and Graphviz (DOT) text, and files rendered by Graphviz.

::

    print(flow.to_mermaid())              # paste into a Markdown file, GitHub draws it
    print(flow.to_dot())                  # `dot -Tsvg` draws it
    flow.render("flow.svg")               # needs the `graph` extra and Graphviz's `dot`
    flow.to_mermaid(highlight=flow.run(ctx))  # the path one input took

Steps are boxes, forks diamonds with an edge per branch labelled with its value
(``DEFAULT`` for the default branch), around services hexagons inside a box drawn
around the steps they wrap, and flows kept whole (`SubFlow`) boxes named after them.
A start and an end node close the drawing.  Names are escaped for each format: a
service named ``'<b>"x"]\n'`` shows as written and cannot break the diagram.  The
output is deterministic: the same flow always gives the same text.

How it is built (the extension point)
-------------------------------------
One walk, `_Diagram.sequence`, turns the flow's nodes into a small model: shapes
(`_Shape`), boxes around shapes (`_Cluster`) and edges (`_Edge`).  Two writers,
`_write_mermaid` and `_write_dot`, turn the model into text; neither knows about nodes.
The walk threads *exits* through the nodes: the shapes whose outgoing edge is still to
be drawn, each with that edge's label.  To draw a new kind of node (a condition, a
repeat, a map, a nested flow with its interface), write one function::

    def _draw_when(diagram: _Diagram, node: When, exits: list[_Exit]) -> list[_Exit]:
        test = diagram.shape(node.name, "fork")            # takes the node's record index
        diagram.connect(exits, test)
        return [*diagram.branch(test, "yes", node.flow.nodes), *diagram.branch(test, "no", ())]

and register it in `_DRAWERS` (``_DRAWERS[When] = _draw_when``).  A drawer must ask
for shapes in the order the compiler numbers the node's records (the node itself, then
what it contains, depth first), so that a run's `StepRecord.position` finds its shape;
``test_graph`` checks that numbering against compiled plans.  Around services are the
one construct that takes the rest of a sequence, so `_Diagram.sequence` handles them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from service_flow._nodes import Fork, Step, SubFlow  # the node classes: each one drawn below
from service_flow._text import short_repr
from service_flow.exceptions import ConfigurationError, FlowError
from service_flow.flow import Flow
from service_flow.run import Run, RunStatus, StepRecord

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

__all__ = ["render", "to_dot", "to_mermaid"]

#: Longest label drawn, in characters; a longer name is cut short with an ellipsis.
_MAX_LABEL = 80
_BRANCH_VALUE = 40  # a fork's branch value, as records show it


# -- the model ---------------------------------------------------------------------


class _Shape:
    """One drawn node: the start, the end, a step, a fork, an around service."""

    __slots__ = ("id", "index", "kind", "label", "last", "passes")

    def __init__(self, shape_id: str, label: str, kind: str, index: int | None) -> None:
        self.id = shape_id
        self.label = label
        self.kind = kind  # start, end, step, fork, around
        self.index = index  # the index of its records (StepRecord.position), if it has any
        self.last = index  # the last index of what it contains (a fork's branches)
        self.passes: list[_Exit] = []  # its exits through branches that do nothing


class _Cluster:
    """A box drawn around shapes: what an around service wraps, a flow kept whole."""

    __slots__ = ("id", "kind", "label", "members")

    def __init__(self, cluster_id: str, label: str, kind: str) -> None:
        self.id = cluster_id
        self.label = label
        self.kind = kind  # around, flow
        self.members: list[_Shape | _Cluster] = []


class _Edge(NamedTuple):
    source: _Shape
    target: _Shape
    label: str | None
    past: bool  # from a fork, through a branch that does nothing, to what comes after


#: A shape whose outgoing edge is still to be drawn, and that edge's label.
_Exit = tuple[_Shape, Union[str, None]]


class _Diagram:
    """The model of one flow, built by walking it once."""

    def __init__(self, flow: Flow) -> None:
        self.ids = itertools.count()
        self.next_index = 0  # record indices, in the compiler's order
        self.shapes: list[_Shape] = []
        self.edges: list[_Edge] = []
        self.names: list[str] = []  # by record index: the name records give it
        self.root = _Cluster("", "", "flow")
        self.open = [self.root]
        name = flow._name  # noqa: SLF001 - a given name titles the diagram; a made-up one is noise
        self.start = self.shape("start" if name is None else name, "start", indexed=False)
        exits = self.sequence(flow.nodes, [(self.start, None)])
        self.end = self.shape("end", "end", indexed=False)
        self.connect(exits, self.end)

    def new_id(self) -> str:
        return f"n{next(self.ids)}"

    def shape(self, label: str, kind: str, *, indexed: bool = True) -> _Shape:
        """A new shape in the innermost open box; *indexed* takes the next record index."""
        index = None
        if indexed:
            index = self.next_index
            self.next_index += 1
            self.names.append(label)
        shape = _Shape(self.new_id(), label, kind, index)
        self.shapes.append(shape)
        self.open[-1].members.append(shape)
        return shape

    def cluster(self, label: str, kind: str) -> _Cluster:
        """Open a box in the innermost open one: shapes go into it until `close`."""
        box = _Cluster(self.new_id(), label, kind)
        self.open[-1].members.append(box)
        self.open.append(box)
        return box

    def close(self) -> None:
        self.open.pop()

    def connect(self, exits: Sequence[_Exit], target: _Shape) -> None:
        """Draw an edge from each of *exits* to *target*."""
        for way in exits:
            source, label = way
            self.edges.append(_Edge(source, target, label, any(way is past for past in source.passes)))

    def branch(self, shape: _Shape, label: str | None, nodes: Sequence[Any]) -> list[_Exit]:
        """Draw *nodes* as a way out of *shape* whose edges say *label*; return its exits.

        A branch without nodes is an edge from *shape* to whatever comes next.  Either
        way, *shape* learns the index of its last record so far (a run that reached any
        index up to it went into one of its branches).
        """
        entry: _Exit = (shape, label)
        if not nodes:
            shape.passes.append(entry)
        exits = self.sequence(nodes, [entry])
        shape.last = self.next_index - 1
        return exits

    def sequence(self, nodes: Sequence[Any], exits: list[_Exit]) -> list[_Exit]:
        """Draw *nodes* one after the other, from *exits*; return the last ones' exits."""
        for position, node in enumerate(nodes):
            if isinstance(node, Step) and node.spec.around:
                return _draw_around(self, node, nodes[position + 1 :], exits)
            drawer = _DRAWERS.get(type(node))
            if drawer is None:
                msg = f"diagrams cannot draw {type(node).__name__} nodes yet ({short_repr(node)})"
                raise FlowError(msg)
            exits = drawer(self, node, exits)
        return exits


# -- one drawer per kind of node -----------------------------------------------------


def _draw_step(diagram: _Diagram, node: Step, exits: list[_Exit]) -> list[_Exit]:
    shape = diagram.shape(node.name, "step")
    diagram.connect(exits, shape)
    return [(shape, None)]


def _draw_fork(diagram: _Diagram, node: Fork, exits: list[_Exit]) -> list[_Exit]:
    fork = diagram.shape(node.name, "fork")
    diagram.connect(exits, fork)
    branches: list[tuple[str, Flow]] = [(short_repr(v, _BRANCH_VALUE), flow) for v, flow in node.branches.items()]
    if node.default is not None:
        branches.append(("DEFAULT", node.default))
    out: list[_Exit] = []
    for label, branch in branches:
        out.extend(diagram.branch(fork, label, branch.nodes))
    return out


def _draw_subflow(diagram: _Diagram, node: SubFlow, exits: list[_Exit]) -> list[_Exit]:
    diagram.cluster(node.name, "flow")
    exits = diagram.sequence(node.flow.nodes, exits)
    diagram.close()
    return exits


def _draw_around(diagram: _Diagram, node: Step, rest: Sequence[Any], exits: list[_Exit]) -> list[_Exit]:
    """An around service and the rest of its sequence (which it wraps), in one box."""
    diagram.cluster(f"around {node.name}", "around")
    shape = diagram.shape(node.name, "around")
    diagram.connect(exits, shape)
    exits = diagram.sequence(rest, [(shape, None)])
    diagram.close()
    return exits


_Drawer = Callable[[_Diagram, Any, "list[_Exit]"], "list[_Exit]"]
_DRAWERS: dict[type, _Drawer] = {Step: _draw_step, Fork: _draw_fork, SubFlow: _draw_subflow}


# -- a run's path --------------------------------------------------------------------


class _Marks(NamedTuple):
    """What a run did, by shape id: ``taken``, ``failed``, ``stopped`` or ``skipped``."""

    shapes: dict[str, str]
    edges: list[int]  # indices into the diagram's edges


_WORST = {RunStatus.SKIPPED: 0, RunStatus.SUCCEEDED: 1, RunStatus.STOPPED: 2, RunStatus.FAILED: 3}


def _record_index(record: StepRecord) -> int:
    # The flat index of the step in the plan: `position` today; once positions become
    # paths, `index` keeps the flat int (a NamedTuple's `index` is otherwise tuple.index).
    index = getattr(record, "index", None)
    return index if isinstance(index, int) else record.position


def _statuses(diagram: _Diagram, run: Run) -> dict[int, RunStatus]:
    """How each step of *run* ended, by record index (the worst, should one run twice)."""
    statuses: dict[int, RunStatus] = {}
    for record in run.steps:
        index = _record_index(record)
        if not 0 <= index < len(diagram.names) or diagram.names[index] != record.name:
            known = diagram.names[index] if 0 <= index < len(diagram.names) else "nothing"
            msg = (
                f"highlight= takes a run of this flow: the run's step #{index} is {record.name!r}, "
                f"where this flow has {short_repr(known)} (the run is of flow {run.flow!r})"
            )
            raise ConfigurationError(msg)
        previous = statuses.get(index)
        if previous is None or _WORST[record.status] > _WORST[previous]:
            statuses[index] = record.status
    return statuses


def _marks(diagram: _Diagram, run: object) -> _Marks | None:
    if run is None:
        return None
    if not isinstance(run, Run):
        msg = f"highlight= takes a Run (what flow.run() returns) or None, got {short_repr(run)}"
        raise ConfigurationError(msg)
    statuses = _statuses(diagram, run)
    ends = (diagram.start, diagram.end) if run.succeeded else (diagram.start,)
    visited = {shape.id for shape in ends}
    shapes = dict.fromkeys(visited, "taken")
    targets: dict[str, list[_Shape]] = {}
    for edge in diagram.edges:
        targets.setdefault(edge.source.id, []).append(edge.target)
    # Shapes are made before what follows them: the reverse order settles a fork's
    # targets (its branches, what comes after it) before the fork.
    for shape in reversed(diagram.shapes):
        status = None if shape.index is None else statuses.get(shape.index)
        if status is not None:
            shapes[shape.id] = "taken" if status is RunStatus.SUCCEEDED else status.value
            if status is not RunStatus.SKIPPED:
                visited.add(shape.id)
        elif shape.kind == "fork" and any(t.id in visited for t in targets.get(shape.id, ())):
            shapes[shape.id] = "taken"
            visited.add(shape.id)
    edges = [position for position, edge in enumerate(diagram.edges) if _taken(edge, visited, statuses)]
    return _Marks(shapes, edges)


def _taken(edge: _Edge, visited: set[str], statuses: dict[int, RunStatus]) -> bool:
    """Whether the run went along *edge* (both its ends were reached)."""
    if edge.source.id not in visited or edge.target.id not in visited:
        return False
    if not edge.past:
        return True
    fork = edge.source  # past it through a branch that does nothing: was it that one?
    assert fork.index is not None  # noqa: S101 - a shape with branches has its index
    assert fork.last is not None  # noqa: S101 - and its last once they are drawn
    into_branch = any(statuses.get(i) for i in range(fork.index + 1, fork.last + 1))
    return not into_branch and len(fork.passes) == 1  # with two, which one is not known


# -- escaping ------------------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


def _visible(char: str) -> str:
    r"""A character that is not printable, as Python writes it (``\x07``, ``\u202e``)."""
    return " " if char == "\t" else repr(char)[1:-1]


# Kept as they are inside a quoted Mermaid label; every other ASCII character becomes an
# entity code (``#35;``), which Mermaid decodes after parsing.
_MERMAID_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:/()+=?!'*@~^$")


def mermaid_text(text: str) -> str:
    """*text* as it may stand between the double quotes of a Mermaid label."""
    out = []
    for char in _clip(text):
        if char in _MERMAID_PLAIN or (char > "\x7f" and char.isprintable()):
            out.append(char)
        elif char == "\n":
            out.append("<br>")
        else:
            shown = char if char.isprintable() else _visible(char)
            out.extend(c if c in _MERMAID_PLAIN else f"#{ord(c)};" for c in shown)
    return "".join(out)


def dot_text(text: str) -> str:
    """*text* as it may stand between the double quotes of a DOT label."""
    out = []
    for char in _clip(text):
        if char == "\n":
            out.append("\\n")
        elif not char.isprintable():
            out.append(_visible(char).replace("\\", "\\\\"))
        elif char == "\\":  # Graphviz reads \n, \l, \N, \G... in labels
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "&":  # Graphviz decodes entities (&lt;, &#945;) in labels too
            out.append("&amp;")
        else:
            out.append(char)
    return "".join(out)


# -- writers -------------------------------------------------------------------------

_MERMAID_SHAPES = {
    "start": ("([", "])"),
    "end": ("((", "))"),
    "step": ("[", "]"),
    "fork": ("{", "}"),
    "around": ("{{", "}}"),
}
_MERMAID_CLASSES = {
    "taken": "fill:#e8f5e9,stroke:#2e7d32,stroke-width:2px",
    "failed": "fill:#ffebee,stroke:#c62828,stroke-width:3px",
    "stopped": "fill:#fff8e1,stroke:#ef6c00,stroke-width:3px",
    "skipped": "fill:#fafafa,stroke:#9e9e9e,stroke-dasharray:4 4,color:#9e9e9e",
}
_TAKEN_EDGE = "#2e7d32"


def _write_mermaid(diagram: _Diagram, marks: _Marks | None) -> str:
    lines = ["flowchart TD"]

    def members(box: _Cluster, indent: str) -> None:
        for member in box.members:
            if isinstance(member, _Cluster):
                lines.append(f'{indent}subgraph {member.id} ["{mermaid_text(member.label)}"]')
                members(member, indent + "    ")
                lines.append(f"{indent}end")
            else:
                left, right = _MERMAID_SHAPES[member.kind]
                lines.append(f'{indent}{member.id}{left}"{mermaid_text(member.label)}"{right}')

    members(diagram.root, "    ")
    for edge in diagram.edges:
        label = "" if edge.label is None else f'|"{mermaid_text(edge.label)}"|'
        lines.append(f"    {edge.source.id} -->{label} {edge.target.id}")
    if marks is not None:
        for mark, style in _MERMAID_CLASSES.items():
            ids = [shape.id for shape in diagram.shapes if marks.shapes.get(shape.id) == mark]
            if ids:
                lines.append(f"    classDef {mark} {style}")
                lines.append(f"    class {','.join(ids)} {mark}")
        if marks.edges:
            lines.append(f"    linkStyle {','.join(map(str, marks.edges))} stroke:{_TAKEN_EDGE},stroke-width:3px")
    return "\n".join(lines) + "\n"


_DOT_SHAPES = {
    "start": 'shape=box, style="rounded,filled", fillcolor="#eeeeee"',
    "end": 'shape=circle, style=filled, fillcolor="#eeeeee"',
    "step": "shape=box",
    "fork": "shape=diamond",
    "around": "shape=hexagon",
}
_DOT_CLUSTERS = {"around": 'style="dashed,rounded"', "flow": 'style="rounded"'}
_DOT_MARKS = {
    "taken": 'color="#2e7d32", penwidth=2, style=filled, fillcolor="#e8f5e9"',
    "failed": 'color="#c62828", penwidth=3, style=filled, fillcolor="#ffebee"',
    "stopped": 'color="#ef6c00", penwidth=3, style=filled, fillcolor="#fff8e1"',
    "skipped": 'color="#9e9e9e", fontcolor="#9e9e9e", style=dashed',
}


def _write_dot(diagram: _Diagram, marks: _Marks | None) -> str:
    lines = [
        "digraph flow {",
        '    graph [rankdir=TB, fontname="Helvetica"];',
        '    node [fontname="Helvetica"];',
        '    edge [fontname="Helvetica"];',
    ]
    shown = {} if marks is None else marks.shapes

    def members(box: _Cluster, indent: str) -> None:
        for member in box.members:
            if isinstance(member, _Cluster):
                lines.append(f"{indent}subgraph cluster_{member.id} {{")
                lines.append(f'{indent}    label="{dot_text(member.label)}"; {_DOT_CLUSTERS[member.kind]};')
                members(member, indent + "    ")
                lines.append(f"{indent}}}")
            else:
                mark = shown.get(member.id)
                style = _DOT_SHAPES[member.kind] + ("" if mark is None else ", " + _DOT_MARKS[mark])
                lines.append(f'{indent}{member.id} [label="{dot_text(member.label)}", {style}];')

    members(diagram.root, "    ")
    taken = frozenset(() if marks is None else marks.edges)
    for position, edge in enumerate(diagram.edges):
        attributes = [] if edge.label is None else [f'label="{dot_text(edge.label)}"']
        if position in taken:
            attributes.append(f'color="{_TAKEN_EDGE}", penwidth=3')
        tail = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"    {edge.source.id} -> {edge.target.id}{tail};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- the public functions ------------------------------------------------------------


def _check_flow(flow: object, what: str) -> Flow:
    if not isinstance(flow, Flow):
        msg = f"{what}() draws a Flow, got {short_repr(flow)}"
        raise ConfigurationError(msg)
    return flow


def to_mermaid(flow: Flow, highlight: Run | None = None) -> str:
    """The flow as a Mermaid flowchart (``flowchart TD``), for Markdown and docs.

    *highlight*, a `Run` of this flow, marks the steps it took and the edges between
    them, the step that failed or stopped it, and the steps an around service skipped.
    """
    diagram = _Diagram(_check_flow(flow, "to_mermaid"))
    return _write_mermaid(diagram, _marks(diagram, highlight))


def to_dot(flow: Flow, highlight: Run | None = None) -> str:
    """The flow as a Graphviz DOT digraph (see `to_mermaid` for *highlight*)."""
    diagram = _Diagram(_check_flow(flow, "to_dot"))
    return _write_dot(diagram, _marks(diagram, highlight))


_TEXT_FORMATS: dict[str, Callable[[Flow, Run | None], str]] = {"dot": to_dot, "gv": to_dot, "mmd": to_mermaid}


def _graphviz() -> Any:
    try:
        import graphviz  # optional: the `graph` extra
    except ImportError:
        msg = "render() needs the graphviz package: pip install 'service-flow[graph]' (and Graphviz itself)"
        raise ConfigurationError(msg) from None
    return graphviz


def render(
    flow: Flow,
    path: str | os.PathLike[str],
    format: str | None = None,  # noqa: A002 - Graphviz's own name for it
    highlight: Run | None = None,
) -> Path:
    """Draw *flow* into the file *path* and return its path.

    The format is *format*, else the path's suffix: ``flow.svg``, ``flow.png``,
    ``flow.pdf``, any format Graphviz's ``dot`` writes.  These need the ``graph`` extra
    (``pip install 'service-flow[graph]'``, the ``graphviz`` package) and Graphviz's
    ``dot`` program (``apt-get install graphviz``, ``brew install graphviz``); each
    missing one is a `ConfigurationError` saying so.  ``.dot``/``.gv`` (DOT text) and
    ``.mmd`` (Mermaid) are written without either.
    """
    checked = _check_flow(flow, "render")
    target = Path(path)
    chosen = target.suffix[1:] if format is None else format
    if type(chosen) is not str or not chosen:
        msg = f"render() needs a format: give {str(target)!r} a suffix (flow.svg) or pass format='svg'"
        raise ConfigurationError(msg)
    chosen = chosen.lower()
    text = _TEXT_FORMATS.get(chosen)
    if text is not None:
        target.write_text(text(checked, highlight), encoding="utf-8")
        return target
    source = to_dot(checked, highlight)  # before Graphviz is needed: its errors first
    graphviz = _graphviz()
    if chosen not in graphviz.FORMATS:
        msg = f"render() cannot write format {short_repr(chosen)}: Graphviz writes svg, png, pdf, ... (or dot, mmd)"
        raise ConfigurationError(msg)
    try:
        data = graphviz.Source(source).pipe(format=chosen)
    except graphviz.ExecutableNotFound:
        msg = (
            "render() needs Graphviz's `dot` program, which is not on PATH: install Graphviz "
            "(apt-get install graphviz, brew install graphviz, choco install graphviz)"
        )
        raise ConfigurationError(msg) from None
    except graphviz.CalledProcessError as error:
        stderr = error.stderr.decode("utf-8", "replace") if isinstance(error.stderr, bytes) else str(error.stderr)
        msg = f"Graphviz's dot failed to write {chosen}: {short_repr(stderr.strip(), 300)}"
        raise FlowError(msg, flow=checked.name) from None
    target.write_bytes(data)
    return target
