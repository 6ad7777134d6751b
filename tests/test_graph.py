"""Diagrams: `to_mermaid`, `to_dot`, `render`, and a run's path highlighted on them."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import pytest

from service_flow import DEFAULT, CallNext, ConfigurationError, Flow, FlowError, StopFlow, around, fork_on
from service_flow import graph as graph_module
from service_flow.graph import render, to_dot, to_mermaid
from service_flow.middleware import DecoratorMiddleware

if TYPE_CHECKING:
    from collections.abc import Callable

DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed (apt-get install graphviz)")


def validate(order: int) -> dict[str, bool]:
    return {"ok": True}


def charge(ok: bool) -> dict[str, int]:
    return {"charged": 1}


def email(ok: bool) -> dict[str, int]:
    return {"mailed": 1}


def invoice(ok: bool) -> dict[str, int]:
    return {"invoiced": 1}


def refuse(ok: bool) -> None:
    raise StopFlow("payment refused")


def save(ok: bool, fail: bool = False) -> dict[str, bool]:
    if fail:
        msg = "disk full"
        raise OSError(msg)
    return {"saved": True}


def audit(ok: bool) -> None:
    return None


class Transaction(DecoratorMiddleware):
    def __call__(self, context: dict[str, Any]) -> None:
        self.app(context)


def orders() -> Flow:
    """Every construct of today: steps, a fork (with an empty and a default branch), an around service."""
    payment = {"card": Flow(charge) >> email, "invoice": invoice, "cash": None, DEFAULT: refuse}
    return (Flow(validate) < ("payment", payment)) >> Transaction() >> save >> audit


# -- Mermaid -------------------------------------------------------------------------

ORDERS_MERMAID = """\
flowchart TD
    n0(["start"])
    n1["validate"]
    n2{"fork on payment"}
    n3["charge"]
    n4["email"]
    n5["invoice"]
    n6["refuse"]
    subgraph n7 ["around Transaction"]
        n8{{"Transaction"}}
        n9["save"]
        n10["audit"]
    end
    n11(("end"))
    n0 --> n1
    n1 --> n2
    n2 -->|"'card'"| n3
    n3 --> n4
    n2 -->|"'invoice'"| n5
    n2 -->|"DEFAULT"| n6
    n4 --> n8
    n5 --> n8
    n2 -->|"'cash'"| n8
    n6 --> n8
    n8 --> n9
    n9 --> n10
    n10 --> n11
"""


def test_mermaid_draws_steps_forks_with_their_values_and_around_services_as_boxes() -> None:
    assert to_mermaid(orders()) == ORDERS_MERMAID
    assert orders().to_mermaid() == ORDERS_MERMAID  # the method is the function


def test_the_same_flow_always_gives_the_same_text() -> None:
    texts = {to_mermaid(orders()) for _ in range(3)}
    assert len(texts) == 1
    assert to_dot(orders()) == to_dot(orders())


def test_a_flow_kept_whole_is_a_box_named_after_it() -> None:
    inner = (Transaction() >> save).named("saving")
    flow = Flow(validate) >> inner >> audit
    text = to_mermaid(flow)
    assert 'subgraph n2 ["saving"]\n        subgraph n3 ["around Transaction"]' in text
    assert text.index('n4{{"Transaction"}}') < text.index('n5["save"]') < text.index("    end\n    end\n")
    assert text.index("    end\n    end\n") < text.index('n6["audit"]')


def test_a_named_flow_names_its_start_and_an_empty_flow_goes_from_start_to_end() -> None:
    assert to_mermaid(Flow(name="nothing")) == 'flowchart TD\n    n0(["nothing"])\n    n1(("end"))\n    n0 --> n1\n'


def test_a_fork_first_and_forks_in_branches_draw_every_branch() -> None:
    flow = fork_on("a", {1: fork_on("b", {True: charge}, default=None), 2: None}, default=invoice) >> audit
    text = to_mermaid(flow)
    edges = [line.strip() for line in text.splitlines() if "-->" in line]
    assert edges == [
        "n0 --> n1",
        'n1 -->|"1"| n2',
        'n2 -->|"True"| n3',
        'n1 -->|"DEFAULT"| n4',
        "n3 --> n5",
        'n1 -->|"2"| n5',
        "n4 --> n5",
        "n5 --> n6",
    ]
    assert 'n1{"fork on a"}' in text
    assert 'n2{"fork on b"}' in text


# Mermaid's grammar for the lines we write: the structure, and labels holding only
# characters that cannot end or change them (entity codes and <br> for the rest).
_LABEL = r"(?:[A-Za-z0-9 _\-.,:/()+=?!'*@~^$]|[^\x00-\x7f]|#\d+;|<br>)*"
_SHAPE = r"(?:\(\[\"L\"\]\)|\(\(\"L\"\)\)|\[\"L\"\]|\{\{\"L\"\}\}|\{\"L\"\})".replace("L", _LABEL)
_MERMAID_LINE = re.compile(
    "|".join(
        [
            rf"\s*n\d+{_SHAPE}",
            rf'\s*subgraph n\d+ \["{_LABEL}"\]',
            r"\s*end",
            rf'\s*n\d+ -->(?:\|"{_LABEL}"\|)? n\d+',
            r"\s*classDef (?:taken|failed|stopped|skipped) [a-z\-]+:[#\w ]+(?:,[a-z\-]+:[#\w ]+)*",
            r"\s*class n\d+(?:,n\d+)* (?:taken|failed|stopped|skipped)",
            r"\s*linkStyle \d+(?:,\d+)* stroke:#\w+,stroke-width:\d+px",
        ]
    )
)


def check_mermaid(text: str) -> None:
    """Every line is one the grammar above allows, subgraphs are closed, ids are n0, n1, ..."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    depth = 0
    for line in lines[1:]:
        assert _MERMAID_LINE.fullmatch(line), line
        depth += line.strip().startswith("subgraph ") - (line.strip() == "end")
        assert depth >= 0
    assert depth == 0
    ids = [re.findall(r"n\d+", line)[0] for line in lines[1:] if re.match(r"\s*(subgraph n\d+ |n\d+[\[({])", line)]
    assert ids == [f"n{i}" for i in range(len(ids))]


def mermaid_labels(text: str) -> list[str]:
    """The labels of the text's nodes, boxes and edges, decoded as Mermaid shows them."""
    found = re.findall(r'"((?:[^"])*)"', text)
    return [re.sub(r"#(\d+);", lambda m: chr(int(m[1])), label.replace("<br>", "\n")) for label in found]


HOSTILE = [
    'say "hi"] --> end\nclick n0 "javascript:alert(1)"',
    "<script>alert('x')</script> & <b>bold</b> &amp; &#945;",
    "[x] {y} (z) ([w]) ((v)) {{u}} |pipe| `tick` ;semi; %% comment? #quot; #35;",
    "back\\slash \\n \\l \\N and tab\tend",
    "café ☕ 中文 🙂 ü",
    "end",
]


def hostile_flow(names: list[str]) -> Flow:
    def service(name: str) -> Any:
        def step(ok: bool = True) -> None:
            return None

        step.__service_flow_name__ = name  # type: ignore[attr-defined]
        return step

    first, *rest = [service(name) for name in names]
    flow = Flow(first)
    for step in rest:
        flow = flow >> step
    return (flow < ("key" + names[0], {names[1]: service(names[2]), DEFAULT: None})) >> Flow(
        around(lambda call_next: call_next())
    )


def test_hostile_names_cannot_break_the_mermaid_text_and_show_as_written() -> None:
    text = to_mermaid(hostile_flow(HOSTILE))
    check_mermaid(text)
    labels = mermaid_labels(text)
    for name in HOSTILE:
        assert name.replace("\t", " ") in labels
    assert "key" + HOSTILE[0] in {label.removeprefix("fork on ") for label in labels if label.startswith("fork on")}
    assert any(label.startswith(repr(HOSTILE[1])[:30]) for label in labels)  # the branch's value
    assert "<lambda at test_graph.py" in " ".join(labels)


def test_unprintable_characters_show_as_python_writes_them_and_long_names_are_cut() -> None:
    odd = "bell\x07 rtl\u202e esc\x1b line\u2028separator next\x85line cr\r"
    text = to_mermaid(hostile_flow([odd, "x" * 200, "y"]))
    check_mermaid(text)
    labels = mermaid_labels(text)
    shown = "bell\\x07 rtl\\u202e esc\\x1b line\\u2028separator next\\x85line cr\\r"
    assert shown in labels
    assert "x" * 79 + "…" in labels
    assert shown in dot_labels(to_dot(hostile_flow([odd, "x" * 200, "y"])))


# A real Mermaid parser, when there is one: `node` and a folder holding the mermaid and
# jsdom packages (.ci/run installs them into SERVICE_FLOW_TEST_MERMAID_MODULES).
MERMAID_MODULES = os.environ.get("SERVICE_FLOW_TEST_MERMAID_MODULES", "")
needs_mermaid = pytest.mark.skipif(
    not (shutil.which("node") and MERMAID_MODULES and (Path(MERMAID_MODULES) / "mermaid").is_dir()),
    reason="no Mermaid parser: set SERVICE_FLOW_TEST_MERMAID_MODULES to a node_modules with mermaid and jsdom",
)
_PARSE_MERMAID = """
import { JSDOM } from "jsdom";
import fs from "fs";
const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });
let failed = 0;
for (const file of process.argv.slice(2)) {
  try { await mermaid.parse(fs.readFileSync(file, "utf8")); }
  catch (error) { failed++; console.log(file, String(error.message || error)); }
}
process.exit(failed ? 1 : 0);
"""


def parse_with_mermaid(tmp_path: Path, texts: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = Path(MERMAID_MODULES).parent / "parse_with_mermaid.mjs"  # resolves its imports there
    script.write_text(_PARSE_MERMAID, encoding="utf-8")
    files = []
    for name, text in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        files.append(str(tmp_path / name))
    node = shutil.which("node")
    assert node is not None
    return subprocess.run([node, str(script), *files], capture_output=True, text=True, check=False, timeout=120)


@needs_mermaid
def test_mermaid_parses_what_we_write_hostile_names_and_highlights_included(tmp_path: Path) -> None:
    flow = orders()
    texts = {
        "orders.mmd": to_mermaid(flow),
        "card.mmd": to_mermaid(flow, highlight=flow.run({"order": 1, "payment": "card"})),
        "failed.mmd": to_mermaid(flow, highlight=flow.run({"order": 1, "payment": "cash", "fail": True})),
        "hostile.mmd": to_mermaid(hostile_flow(HOSTILE)),
        "empty.mmd": to_mermaid(Flow()),
    }
    done = parse_with_mermaid(tmp_path, texts)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = parse_with_mermaid(tmp_path, {"broken.mmd": 'flowchart TD\n    n0["a"b"]\n'})  # the check can fail
    assert broken.returncode == 1
    assert "broken.mmd" in broken.stdout


# -- DOT -----------------------------------------------------------------------------

ORDERS_DOT = """\
digraph flow {
    graph [rankdir=TB, fontname="Helvetica"];
    node [fontname="Helvetica"];
    edge [fontname="Helvetica"];
    n0 [label="start", shape=box, style="rounded,filled", fillcolor="#eeeeee"];
    n1 [label="validate", shape=box];
    n2 [label="fork on payment", shape=diamond];
    n3 [label="charge", shape=box];
    n4 [label="email", shape=box];
    n5 [label="invoice", shape=box];
    n6 [label="refuse", shape=box];
    subgraph cluster_n7 {
        label="around Transaction"; style="dashed,rounded";
        n8 [label="Transaction", shape=hexagon];
        n9 [label="save", shape=box];
        n10 [label="audit", shape=box];
    }
    n11 [label="end", shape=circle, style=filled, fillcolor="#eeeeee"];
    n0 -> n1;
    n1 -> n2;
    n2 -> n3 [label="'card'"];
    n3 -> n4;
    n2 -> n5 [label="'invoice'"];
    n2 -> n6 [label="DEFAULT"];
    n4 -> n8;
    n5 -> n8;
    n2 -> n8 [label="'cash'"];
    n6 -> n8;
    n8 -> n9;
    n9 -> n10;
    n10 -> n11;
}
"""


def test_dot_draws_the_same_graph() -> None:
    assert to_dot(orders()) == ORDERS_DOT
    assert orders().to_dot() == ORDERS_DOT


def dot_labels(text: str) -> list[str]:
    """The labels of a DOT text, decoded as Graphviz reads them."""
    found = re.findall(r'label="((?:[^"\\]|\\.)*)"', text)
    unescape = {"n": "\n", '"': '"', "\\": "\\"}
    return [
        re.sub(r"\\(.)", lambda m: unescape[m[1]], label).replace("&amp;", "&")  # only these escapes are written
        for label in found
    ]


def test_hostile_names_cannot_break_the_dot_text() -> None:
    text = to_dot(hostile_flow(HOSTILE))
    # Outside labels, only our own syntax: take the labels out and nothing but ids and attributes remain.
    skeleton = re.sub(r'label="(?:[^"\\]|\\.)*"', "label=L", text)
    syntax = [
        r"n\d+ \[label=L, [^\[\]]+\];",
        r"n\d+ -> n\d+( \[label=L\])?;",
        r"subgraph cluster_n\d+ \{",
        r"\}",
        r"label=L; [^\[\]]+;",
    ]
    for line in skeleton.splitlines()[4:-1]:
        assert re.fullmatch(rf"\s*(?:{'|'.join(syntax)})", line), line
    labels = dot_labels(text)
    for name in HOSTILE:
        assert name.replace("\t", " ") in labels


def svg_text(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # noqa: S314 - Graphviz's own output
    return [element.text or "" for element in root.iter("{http://www.w3.org/2000/svg}text")]


@needs_dot
def test_dot_parses_the_text_and_draws_hostile_names_as_written(tmp_path: Path) -> None:
    assert DOT is not None
    flow = hostile_flow(HOSTILE)
    done = subprocess.run([DOT, "-Tsvg"], input=to_dot(flow), capture_output=True, text=True, check=True)
    assert done.stderr == ""
    shown = svg_text(done.stdout)
    for name in HOSTILE:
        for line in name.replace("\t", " ").split("\n"):
            assert line in shown, line
    highlighted = to_dot(orders(), highlight=orders().run({"order": 1, "payment": "nope"}))
    subprocess.run([DOT, "-Tsvg"], input=highlighted, capture_output=True, text=True, check=True)


# -- a run's path --------------------------------------------------------------------


def nested_everything() -> Flow:
    @around
    def guard(call_next: CallNext) -> None:
        call_next()

    branch = (Flow(guard) >> charge < ("kind", {"a": email, "b": fork_on("c", {1: invoice}, default=None)})) >> save
    kept = (Transaction() >> audit).named("kept")
    return (fork_on("payment", {"card": branch, "cash": kept}, default=refuse) >> validate) >> kept >> email


@pytest.mark.parametrize(
    "flow", [orders(), nested_everything(), hostile_flow(HOSTILE)], ids=["orders", "nested", "hostile"]
)
def test_shapes_take_the_indices_the_compiler_gives_records(flow: Flow) -> None:
    plan = flow._plan(aio=False, record=True)
    assert graph_module._Diagram(flow).names == [info.name for info in plan.steps]


def marked(text: str) -> dict[str, list[str]]:
    """Mermaid's marks: each class's node ids, and ``edges``: the taken edges' indices."""
    found = {name: ids.split(",") for ids, name in re.findall(r"^    class (\S+) (\w+)$", text, re.MULTILINE)}
    edges = re.findall(r"^    linkStyle (\S+) ", text, re.MULTILINE)
    found["edges"] = edges[0].split(",") if edges else []
    return found


def test_highlight_marks_the_steps_and_edges_a_run_took() -> None:
    flow = orders()
    run = flow.run({"order": 1, "payment": "card"})
    assert marked(flow.to_mermaid(highlight=run)) == {
        "taken": ["n0", "n1", "n2", "n3", "n4", "n8", "n9", "n10", "n11"],
        "edges": ["0", "1", "2", "3", "6", "10", "11", "12"],
    }
    assert to_mermaid(flow, highlight=run).startswith(ORDERS_MERMAID)  # the same drawing, with marks after it


def test_highlight_through_a_branch_that_does_nothing_and_a_failing_step() -> None:
    flow = orders()
    run = flow.run({"order": 1, "payment": "cash", "fail": True})
    assert run.failed
    marks = marked(flow.to_mermaid(highlight=run))
    # save failed; Transaction passed its error on, so it failed too; audit and the end were not reached.
    assert marks == {"taken": ["n0", "n1", "n2"], "failed": ["n8", "n9"], "edges": ["0", "1", "8", "10"]}
    assert "classDef failed fill:#ffebee,stroke:#c62828,stroke-width:3px" in flow.to_mermaid(highlight=run)


def test_highlight_shows_a_stopping_step_and_nothing_after_it() -> None:
    flow = orders()
    run = flow.run({"order": 1, "payment": "crypto"})
    assert run.stopped
    assert marked(flow.to_mermaid(highlight=run)) == {
        "taken": ["n0", "n1", "n2"],
        "stopped": ["n6"],
        "edges": ["0", "1", "5"],
    }


def test_highlight_shows_a_fork_whose_key_is_missing_as_failed() -> None:
    flow = orders()
    run = flow.run({"order": 1})
    assert marked(flow.to_mermaid(highlight=run)) == {"taken": ["n0", "n1"], "failed": ["n2"], "edges": ["0", "1"]}


def test_highlight_shows_the_steps_an_around_service_skipped() -> None:
    @around
    def closed(call_next: CallNext) -> None:
        return None

    flow = Flow(validate) >> closed >> charge >> email
    marks = marked(flow.to_mermaid(highlight=flow.run({"order": 1})))
    assert marks == {"taken": ["n0", "n1", "n3", "n6"], "skipped": ["n4", "n5"], "edges": ["0", "1"]}
    dot = flow.to_dot(highlight=flow.run({"order": 1}))
    assert 'n4 [label="charge", shape=box, color="#9e9e9e", fontcolor="#9e9e9e", style=dashed];' in dot
    assert 'n1 [label="validate", shape=box, color="#2e7d32", penwidth=2, style=filled, fillcolor="#e8f5e9"];' in dot
    assert 'n1 -> n3 [color="#2e7d32", penwidth=3];' in dot
    assert "n5 -> n6;" in dot  # the around service returned: the run never went from email to the end


def test_highlight_of_a_fork_with_two_empty_branches_cannot_tell_which_was_taken() -> None:
    flow = Flow(validate) < ("payment", {"cash": None, "cheque": None, "card": charge})
    text = flow.to_mermaid(highlight=flow.run({"order": 1, "payment": "cash"}))
    assert marked(text) == {"taken": ["n0", "n1", "n2", "n4"], "edges": ["0", "1"]}


def test_highlight_takes_an_async_run_as_well() -> None:
    async def fetch(order: int) -> dict[str, bool]:
        await asyncio.sleep(0)
        return {"ok": True}

    flow = Flow(fetch) < ("payment", {"card": charge, DEFAULT: refuse})
    run = asyncio.run(flow.arun({"order": 1, "payment": "card"}))
    assert marked(flow.to_mermaid(highlight=run)) == {
        "taken": ["n0", "n1", "n2", "n3", "n5"],
        "edges": ["0", "1", "2", "4"],
    }


def test_highlight_takes_a_run_of_this_flow_only() -> None:
    other = Flow(charge) >> email
    with pytest.raises(
        ConfigurationError, match=r"a run of this flow: the run's step #0 is 'charge', where this flow has 'validate'"
    ):
        orders().to_mermaid(highlight=other.run({"ok": True}))
    with pytest.raises(ConfigurationError, match=r"highlight= takes a Run .* got \{'order': 1\}"):
        to_dot(orders(), highlight={"order": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"to_mermaid\(\) draws a Flow, got <function charge"):
        to_mermaid(charge)  # type: ignore[arg-type]


# -- render --------------------------------------------------------------------------


@needs_dot
def test_render_writes_an_svg_named_by_its_suffix(tmp_path: Path) -> None:
    flow = orders()
    written = flow.render(tmp_path / "orders.svg")
    assert written == tmp_path / "orders.svg"
    shown = svg_text(written.read_text(encoding="utf-8"))
    assert {"validate", "fork on payment", "'card'", "DEFAULT", "around Transaction", "end"} <= set(shown)
    run = flow.run({"order": 1, "payment": "card"})
    png = render(flow, str(tmp_path / "run.PNG"), highlight=run)
    assert png.read_bytes().startswith(b"\x89PNG")
    assert render(flow, tmp_path / "orders.out", format="pdf").read_bytes().startswith(b"%PDF")


def test_render_writes_dot_and_mermaid_text_without_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)  # as if the extra were not installed
    flow = orders()
    assert render(flow, tmp_path / "orders.dot").read_text(encoding="utf-8") == ORDERS_DOT
    assert render(flow, tmp_path / "orders.gv").read_text(encoding="utf-8") == ORDERS_DOT
    assert render(flow, tmp_path / "orders.mmd").read_text(encoding="utf-8") == ORDERS_MERMAID


def test_render_without_the_graphviz_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ConfigurationError, match=re.escape("pip install 'service-flow[graph]'")):
        orders().render(tmp_path / "orders.svg")
    assert not (tmp_path / "orders.svg").exists()


def test_render_without_graphviz_dot_names_the_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("graphviz")
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder without `dot`, whether Graphviz is installed or not
    with pytest.raises(
        ConfigurationError, match=r"needs Graphviz's `dot` program, which is not on PATH: install Graphviz"
    ):
        orders().render(tmp_path / "orders.svg")
    assert not (tmp_path / "orders.svg").exists()


def test_render_reports_what_dot_said_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("graphviz")
    fake = tmp_path / "dot"  # a `dot` that refuses everything, as one lacking a format's plugin does
    fake.write_text(
        textwrap.dedent("""\
        #!/bin/sh
        echo "Error: renderer for svg is unavailable" >&2
        exit 1
    """)
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    with pytest.raises(FlowError, match=r"dot failed to write svg: 'Error: renderer for svg is unavailable'"):
        orders().render(tmp_path / "orders.svg")


def test_render_needs_a_format_it_knows(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"render\(\) needs a format: give '.*orders' a suffix"):
        orders().render(tmp_path / "orders")
    pytest.importorskip("graphviz")
    with pytest.raises(ConfigurationError, match=r"render\(\) cannot write format 'docx'"):
        orders().render(tmp_path / "orders.docx")


# -- the README ----------------------------------------------------------------------


def test_the_readme_example_prints_what_the_readme_shows(
    run_readme_example: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    run_readme_example("Diagrams")
    printed = capsys.readouterr().out
    section = (Path(__file__).parent.parent / "README.rst").read_text(encoding="utf-8").split("\nDiagrams\n", 1)[1]
    shown = section.split(".. code-block:: text\n\n", 1)[1].split("\n\n", 1)[0]
    assert printed == textwrap.dedent(shown) + "\n\n"  # print() adds a newline to the text's own


# -- the extension point -------------------------------------------------------------


class When:
    """A node kind the library does not have yet: its flow runs only when a test holds."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.name = "when ready"


def draw_when(diagram: Any, node: When, exits: list[Any]) -> list[Any]:  # the module docstring's example
    test = diagram.shape(node.name, "fork")
    diagram.connect(exits, test)
    return [*diagram.branch(test, "yes", node.flow.nodes), *diagram.branch(test, "no", ())]


def test_a_new_kind_of_node_is_drawn_by_one_function(monkeypatch: pytest.MonkeyPatch) -> None:
    diagram = graph_module._Diagram(Flow())
    with pytest.raises(FlowError, match="diagrams cannot draw When nodes yet"):
        diagram.sequence([When(Flow(charge))], [(diagram.start, None)])
    monkeypatch.setitem(graph_module._DRAWERS, When, draw_when)
    diagram = graph_module._Diagram(Flow())
    exits = diagram.sequence([When(Flow(charge) >> email)], [(diagram.start, None)])
    diagram.connect(exits, diagram.end)
    text = graph_module._write_mermaid(diagram, None)
    check_mermaid(text)
    assert text.endswith('    n2 -->|"yes"| n3\n    n3 --> n4\n    n4 --> n1\n    n2 -->|"no"| n1\n')
    assert diagram.names == ["when ready", "charge", "email"]
    assert [edge.past for edge in diagram.edges[-4:]] == [False, False, False, True]
