"""Compiles a flow, once, into a *plan*: generated Python that runs its steps.

Everything that can be decided before a run is decided here: how each service's
parameters are looked up and passed, which services are awaited or sent to a thread,
where forks branch, where around services hand over the rest of the flow.  The
generated functions then do what hand-written code would: look up, call, merge.

Two variants exist per flow and per sync/async: the plain one (``flow(ctx)``) and the
recording one (``flow.run(ctx)``), which also keeps a raw record per step: three flat
items, ``index, result, end time`` (see `service_flow.run`), nothing the garbage
collector has to track.  A recording function keeps each step's result and end time in
locals (``r3``, ``t3``) and adds them to the records in one go (``rec += (...)``) before
anything else writes there (a fork, a nested flow, an around service) and at its end;
a step that fails first hands over those of the steps before it, read from the frame.
The traced variant (debug events on) hands each step over as it ends, to log it then.
Errors are attributed to steps from the traceback's line numbers, so the plain variant
pays nothing to know where it is.

No value a user gave is written into the source as it was given: parameter names are
checked to be plain identifiers and keys to be real ``str`` (whose ``repr`` is a safe
literal) when the flow is built; defaults, services and fork tables are globals.
"""

from __future__ import annotations

import asyncio
import itertools
import linecache
import weakref
from typing import TYPE_CHECKING, Any

from service_flow import _plan
from service_flow._nodes import Fork, Node, Step, steps_of
from service_flow._plan import (
    CURRENT_APP,
    AsyncNext,
    Helpers,
    Next,
    Plan,
    StepInfo,
    as_context,
    bind_app,
    no_branch,
    unbind_app,
)
from service_flow._text import listing, short_repr
from service_flow.exceptions import FlowDefinitionError
from service_flow.run import AROUND_STARTS, SKIPPED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from service_flow._spec import Spec
    from service_flow.flow import Flow

_PLAN_NUMBERS = itertools.count(1)
_MAX_COMMENT = 60  # characters of a step's name in the comment on its line


class _Block(list[tuple[str, "int | None"]]):  # a base class is evaluated, even on 3.9
    """The lines of one generated function, each with the step it belongs to."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        super().__init__()
        # (index, result local, end-time local) of the steps not yet added to the records.
        self.pending: list[tuple[int, str, str]] = []


class _Generator:
    """Writes the source of one plan."""

    def __init__(self, flow: Flow, *, record: bool, trace: bool = False) -> None:
        self.flow_name = flow.name
        self.record = record
        self.trace = trace  # hand each step to the records as it ends (they log it)
        self.blocks: list[_Block] = []
        self.steps: list[StepInfo] = []
        self.helpers = helpers = Helpers(self.flow_name, self.steps)
        self.pending_at = helpers.pending_at
        self.skips = helpers.skips
        self.pending_tables: list[tuple[str, dict[Any, str], str | None, int, Fork]] = []
        # The steps and forks each function runs on its own line (sub-flows and the rest
        # of an around service included).
        self.mainline: dict[str, list[int]] = {}
        self.ns: dict[str, Any] = {
            "__builtins__": __builtins__,
            "now": _plan.now,  # read when compiled: one clock for the plan and its helpers
            "_thread": asyncio.to_thread,
            "_Next": Next,
            "_AsyncNext": AsyncNext,
            "_bind_app": bind_app,
            "_unbind_app": unbind_app,
            "_missing": helpers.missing,
            "_failed": helpers.failed,
            "_other": helpers.other,
            "_aother": helpers.aother,
            "_kwargs": helpers.kwargs,
            "_skipped": helpers.skipped,
            "_SKIPPED": SKIPPED,
        }

    def bind(self, name: str, value: object) -> str:
        self.ns[name] = value
        return name

    def new_step(self, name: str, branch: str, spec: Spec | None, fork_key: str | None = None) -> int:
        self.steps.append(StepInfo(name, branch, spec, fork_key))
        return len(self.steps) - 1

    def function(self, nodes: Sequence[Node], branch: str, *, aio: bool) -> str:
        """Emit a function running *nodes* in order; return its name."""
        name = f"_p{len(self.blocks)}"
        block = _Block()
        self.blocks.append(block)
        # A record's start is the end of the record before it (see service_flow.run): one
        # clock reading per step, none wasted between them.
        block.append((f"{'async ' if aio else ''}def {name}(ctx{', rec' if self.record else ''}):", None))
        indices: list[int] = []
        for position, node in enumerate(nodes):
            if isinstance(node, Step) and node.spec.around:
                index = self.around(block, node.spec, nodes[position + 1 :], branch, aio=aio)
                indices.append(index)
                indices.extend(self.skips[index])
                break
            if isinstance(node, Step):
                indices.append(self.step(block, node.spec, branch, aio=aio))
            elif isinstance(node, Fork):
                indices.append(self.fork(block, node, branch, aio=aio))
            else:
                inner = self.function(node.flow.nodes, branch, aio=aio)
                indices.extend(self.mainline[inner])
                self.flush(block)
                self.emit_call(block, inner, None, aio=aio)
        self.flush(block)
        block.append(("    return None", None))
        self.mainline[name] = indices
        return name

    def flush(self, block: _Block) -> None:
        """Add the records of the steps still in locals to ``rec``, in one go."""
        if block.pending:
            items = ", ".join(f"{index}, {result}, {end}" for index, result, end in block.pending)
            block.append((f"    rec += ({items})", None))
            block.pending.clear()

    def emit_call(self, block: _Block, function: str, owner: int | None, *, aio: bool) -> None:
        call = f"{'await ' if aio else ''}{function}"
        block.append((f"    {call}(ctx, rec)" if self.record else f"    {call}(ctx)", owner))

    def arguments(self, spec: Spec, index: int, lookups: list[str]) -> list[str]:
        """The argument list of a call to *spec*; appends the required lookups."""
        if spec.whole_context:
            return ["context=ctx" if spec.whole_context_keyword else "ctx"]
        call_args = []
        for number, arg in enumerate(spec.args):
            if spec.var_keyword and arg.keyword:
                if arg.required:
                    lookups.append(f"ctx[{arg.name!r}]")
                continue
            if arg.required:
                lookups.append(f"a{number} = ctx[{arg.name!r}]")
                value = f"a{number}"
            else:
                value = f"ctx.get({arg.name!r}, {self.bind(f'_d{index}_{number}', arg.default)})"
            call_args.append(f"{arg.name}={value}" if arg.keyword else value)
        if spec.var_keyword:
            call_args.append("**ctx")
        return call_args

    def lookups(self, block: _Block, index: int, lines: list[str]) -> None:
        """Emit the context lookups of step *index*, a missing key raising `MissingContextKey`."""
        if not lines:
            return
        rec = "rec" if self.record else "None"
        texts = ["try:", *(f"    {line}" for line in lines), "except KeyError:", f"    _missing({index}, ctx, {rec})"]
        block.extend((f"    {text}", index) for text in texts)

    def step(  # noqa: PLR0913 - each option is one way a step is called
        self,
        block: _Block,
        spec: Spec,
        branch: str,
        *,
        aio: bool,
        extra: str = "",
        app: str | None = None,
        index: int | None = None,
        thread: bool = False,
    ) -> int:
        """Emit one step: lookups, the call, the merge, the record."""
        if index is None:
            index = self.new_step(spec.name, branch, spec)
        if app is not None or extra:
            self.flush(block)  # the steps it wraps write their records themselves
        if block.pending:
            self.pending_at[index] = tuple(block.pending)

        def emit(text: str) -> None:
            block.append((f"    {text}", index))

        call = self.bind(f"_s{index}", spec.call)
        lookups: list[str] = []
        call_args = self.arguments(spec, index, lookups)
        if extra:
            call_args.append("call_next=n")
        self.lookups(block, index, lookups)
        expression = _call_expression(call, call_args, spec, aio=aio, thread=thread)
        if app is not None or extra:
            emit(f"n = {app or extra}")
            if self.record:
                # It starts where the last record ended.
                emit(f"rec += ({AROUND_STARTS - index}, None, None)")
        result = f"r{index}" if self.record else "r"
        merge = self.merge(spec, index, result, aio=aio)
        call_line = f"{result} = {expression}{_comment(spec.name)}"
        for line in self.guarded(call_line, spec, index, app=app, merge=merge):
            emit(line)
        if self.record:
            self.end_record(block, spec, index, result)
        return index

    def end_record(self, block: _Block, spec: Spec, index: int, result: str) -> None:
        """Emit the end of step *index*'s record (kept in locals until the next flush)."""
        if spec.around:
            lines = ["if not n.done:", f"    _skipped({index}, rec)", f"rec += ({index}, {result}, now())"]
            block.extend((f"    {line}", index) for line in lines)
            return
        block.append((f"    t{index} = now()", index))
        block.pending.append((index, result, f"t{index}"))
        if self.trace:
            self.flush(block)

    def merge(self, spec: Spec, index: int, result: str, *, aio: bool) -> list[str]:
        """The lines merging a step's *result* into the context."""
        lines = []
        if self.record and (spec.whole_context or spec.around):
            # Returning the context itself (`return call_next()`) sets no key of its own.
            lines += [f"if {result} is ctx:", f"    {result} = None"]
        return [
            *lines,
            f"if type({result}) is dict:",
            f"    ctx.update({result})",
            f"elif {result} is not None:",
            f"    {result} = {'await _aother' if aio else '_other'}({index}, ctx, {result})",
        ]

    def guarded(self, call: str, spec: Spec, index: int, *, app: str | None, merge: list[str]) -> list[str]:
        """The lines of a step's call and *merge*, inside the guards they need.

        A recording plan guards the merge too: a result that cannot be merged fails the
        step then and there, recorded with the steps before it.
        """
        lines = [call]
        if spec.var_keyword:
            # A context with keys that are not strings cannot be passed as keywords.
            lines = ["try:", *_indent(lines), "except TypeError:", f"    _kwargs({index}, ctx)", "    raise"]
        if app is not None:
            token = f"token = _bind_app({self.bind(f'_o{index}', spec.service)}, n)"
            lines = [token, "try:", *_indent(lines), "finally:", "    _unbind_app(token)"]
        if not self.record:
            return [*lines, *merge]
        return [
            "try:",
            *_indent([*lines, *merge]),
            "except BaseException as error:",
            f"    _failed({index}, error, rec)",
            "    raise",
        ]

    def around(self, block: _Block, spec: Spec, rest: Sequence[Node], branch: str, *, aio: bool) -> int:
        """Emit an around step, compiling the rest of the sequence as its ``call_next``."""
        rest_aio = aio
        thread = False
        if aio and not spec.is_async:
            inner = list(steps_of(rest))
            inner_async = [step.name for step in inner if step.spec.is_async]
            if inner_async:
                message = (
                    f"around service {spec.name} is synchronous but wraps async steps "
                    f"({listing(inner_async)}): make its __call__ `async def` and await "
                    "the rest of the flow (`await call_next()` or `await self.app(context)`)"
                )
                raise FlowDefinitionError(message, flow=self.flow_name, step=spec.name)
            rest_aio = False
            # The rest runs inside this sync call: if any of it blocks, the whole around
            # service goes to a worker thread (which sees the same context variables).
            thread = any(step.spec.blocking for step in inner)
        index = self.new_step(spec.name, branch, spec)  # before the steps it wraps
        function = self.function(rest, branch, aio=rest_aio)
        self.skips[index] = tuple(self.mainline[function])
        records = "rec" if self.record else "None"
        rest_call = f"{'_AsyncNext' if rest_aio else '_Next'}({function}, ctx, {records})"
        if spec.around == "app":
            self.step(block, spec, branch, aio=aio, app=rest_call, index=index, thread=thread)
        else:
            self.step(block, spec, branch, aio=aio, extra=rest_call, index=index, thread=thread)
        return index

    def fork(self, block: _Block, node: Any, branch: str, *, aio: bool) -> int:
        """Emit a fork: look up its key, pick the branch function, call it."""
        self.flush(block)  # before its lookup, which may fail, and its branch, which records
        index = self.new_step(node.name, branch, None, node.key)
        prefix = f"{branch} > " if branch else ""
        functions = {}
        for value, flow in node.branches.items():
            functions[value] = self.function(flow.nodes, f"{prefix}{node.key}={short_repr(value, 40)}", aio=aio)
        default = None
        if node.default is not None:
            default = self.function(node.default.nodes, f"{prefix}{node.key}=DEFAULT", aio=aio)
        # Filled in by finalize(), once the branch functions exist.
        table = self.bind(f"_f{index}", {})
        self.pending_tables.append((table, functions, default, index, node))
        self.lookups(block, index, [f"v = ctx[{node.key!r}]"])
        lines = [
            "try:",
            f"    b = {table}[v]{_comment(node.name)}",
            "except Exception:",  # unknown, unhashable, a __hash__ or __eq__ that raises
            f"    b = _x{index}(v{', rec' if self.record else ''})",  # a run records its failure
        ]
        block.extend((f"    {line}", index) for line in lines)
        self.emit_call(block, "b", index, aio=aio)
        return index

    def finalize(self, *, aio: bool) -> Plan:
        """Compile the source, fill the fork tables and return the plan."""
        source_lines: list[str] = []
        owner: dict[int, int] = {}
        if aio and not self.record:
            # `await flow(ctx)` awaits the entry itself: it names the step on the error
            # and returns the context, where a wrapper coroutine would cost a tenth more.
            head, *body, _ = self.blocks[0]
            self.blocks[0] = entry = _Block()
            entry += [
                head,
                ("    try:", None),
                *((f"    {text}", index) for text, index in body),
                ("    except BaseException as error:", None),
                ("        _annotate(error)", None),
                ("        raise", None),
                ("    return ctx", None),
            ]
        for block in self.blocks:
            for text, index in block:
                source_lines.append(text)
                if index is not None:
                    owner[len(source_lines)] = index
            source_lines.append("")
        source = "\n".join(source_lines)
        filename = f"<service_flow plan {next(_PLAN_NUMBERS)}: {self.flow_name}>"
        exec(compile(source, filename, "exec"), self.ns)  # noqa: S102 - our own generated code
        for table, functions, default, index, node in self.pending_tables:
            self.ns[table].update({value: self.ns[function] for value, function in functions.items()})
            self.ns[f"_x{index}"] = no_branch(
                node, self.ns[default] if default else None, self.flow_name, self.steps[index].name, index
            )
        # Let tracebacks show the generated lines, and forget them with the plan.
        # (The flow's name has no NUL: Flow checks names when they are given.)
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        plan = Plan(
            entry=self.ns["_p0"],
            steps=tuple(self.steps),
            flow_name=self.flow_name,
            filename=filename,
            owner=owner,
            aio=aio,
            record=self.record,
            source=source,
        )
        self.ns["_annotate"] = plan.annotate
        weakref.finalize(plan, linecache.cache.pop, filename, None)
        return plan


def _comment(name: str) -> str:
    """A step's name as a comment ending its line: only printable characters, cut short.

    A line break, a NUL or a Unicode line separator in a name would end the comment (or,
    for tracebacks, shift the lines): each is written as ``?``.
    """
    text = "".join(char if char.isprintable() else "?" for char in name[:_MAX_COMMENT])
    return f"  # {text}{'…' if len(name) > _MAX_COMMENT else ''}"


def _indent(lines: list[str]) -> list[str]:
    return [f"    {line}" for line in lines]


def _call_expression(call: str, call_args: list[str], spec: Spec, *, aio: bool, thread: bool) -> str:
    joined = ", ".join(call_args)
    if aio and spec.is_async:
        return f"await {call}({joined})"
    if aio and (spec.blocking or thread):
        return f"await _thread({call}{', ' if joined else ''}{joined})"
    return f"{call}({joined})"


def compile_flow(flow: Flow, *, aio: bool, record: bool, trace: bool = False) -> Plan:
    """Compile *flow* into a plan (sync or async; plain, recording or traced)."""
    generator = _Generator(flow, record=record, trace=trace)
    generator.function(flow.nodes, "", aio=aio)
    return generator.finalize(aio=aio)


__all__ = ["CURRENT_APP", "Plan", "StepInfo", "as_context", "compile_flow"]
