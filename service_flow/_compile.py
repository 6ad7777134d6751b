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
import contextvars
import difflib
import inspect
import itertools
import linecache
import sys
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from service_flow import _log
from service_flow._text import listing, short_repr
from service_flow.exceptions import (
    FlowDefinitionError,
    FlowError,
    ForkError,
    InvalidInput,
    MissingContextKey,
    StopFlow,
)
from service_flow.run import (
    AROUND_STARTS,
    MARK,
    SKIPPED,
    Failure,
    RecordReader,
    Records,
    Run,
    format_run_id,
    new_run,
    provenance,
    write,
)

if TYPE_CHECKING:
    from service_flow._spec import Spec
    from service_flow.flow import Flow, Node

now = time.perf_counter

#: The rest of the flow for the `DecoratorMiddleware` running now: (middleware, rest).
CURRENT_APP: contextvars.ContextVar[tuple[object, Callable[..., Any]] | None] = contextvars.ContextVar(
    "service_flow_current_app", default=None
)

_PLAN_NUMBERS = itertools.count(1)
_MAX_LISTED_KEYS = 20
_MAX_LISTED_VALUES = 10
_MAX_KEY_CHARS = 60
_MAX_MATCHED_KEYS = 500  # near misses are looked for among this many keys at most


class StepInfo(NamedTuple):
    """A step (or fork) of a compiled plan, by index."""

    name: str
    branch: str
    spec: Spec | None  # None for a fork
    fork_key: str | None


def as_context(context: object, flow: Flow) -> dict[str, Any]:
    """A fresh dict holding the caller's mapping, which is never changed.

    ``None`` is the empty input; anything else that is not a mapping raises `InvalidInput`.
    """
    if context is None:
        return {}
    if isinstance(context, Mapping):
        return dict(context)
    msg = f"flow {flow.name!r} takes a mapping as its context, got {type(context).__name__}: {short_repr(context, 60)}"
    raise InvalidInput(msg, flow=flow.name)


def _next_context(context: object) -> dict[str, Any]:
    if isinstance(context, dict):
        return context
    if isinstance(context, Mapping):
        return dict(context)
    msg = f"call_next takes the context mapping (or nothing), got {type(context).__name__}"
    raise FlowError(msg)


class _Next:
    """``call_next`` / ``self.app``: runs the rest of the flow on a context."""

    __slots__ = ("ctx", "done", "plan", "rec")

    def __init__(self, plan: Callable[..., Any], ctx: dict[str, Any], rec: Records | None) -> None:
        self.plan = plan
        self.ctx = ctx
        self.rec = rec
        self.done = False  # the rest ran to its end; a run records what it left out otherwise

    def __call__(self, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ctx = self.ctx if context is None else _next_context(context)
        rec = self.rec
        if rec is None:
            self.plan(ctx)
        else:
            write(rec, MARK, None, now())  # the rest starts now
            self.plan(ctx, rec)
        self.done = True  # not when the rest raised: what it did not reach was skipped
        return ctx


class _AsyncNext(_Next):
    """``call_next`` for async around services: returns an awaitable."""

    __slots__ = ()

    async def __call__(self, context: Mapping[str, Any] | None = None) -> dict[str, Any]:  # type: ignore[override]
        ctx = self.ctx if context is None else _next_context(context)
        rec = self.rec
        if rec is None:
            await self.plan(ctx)
        else:
            write(rec, MARK, None, now())
            await self.plan(ctx, rec)
        self.done = True
        return ctx


def _bind_app(middleware: object, rest: _Next) -> contextvars.Token[tuple[object, Callable[..., Any]] | None]:
    return CURRENT_APP.set((middleware, rest))


def _unbind_app(token: contextvars.Token[tuple[object, Callable[..., Any]] | None]) -> None:
    CURRENT_APP.reset(token)


class _Tracer(list):  # type: ignore[type-arg]
    """Raw records of a run whose debug events are on: logs each step as it ends."""

    __slots__ = ("log", "reader", "steps")

    def __init__(self, log: Any, steps: Sequence[StepInfo], started: float) -> None:
        super().__init__()
        self.log = log
        self.steps = steps
        self.reader = RecordReader(started)

    def append(self, item: Any) -> None:
        """Keep *item*; once an event's three items are in, log it."""
        super().append(item)
        if len(self) % 3 == 0:
            self.log_event(self[-3], self[-2], self[-1])

    def __iadd__(self, items: Any) -> _Tracer:  # type: ignore[misc]  # noqa: PYI034
        """Keep *items*, whole events, logging each (the traced plans add one at a time)."""
        for item in items:
            self.append(item)
        return self

    def log_event(self, index: int, result: Any, end: float) -> None:
        """Log one event of the raw records (nothing for a mark)."""
        read = self.reader.read(index, result, end)
        if read is None:
            return
        start = read[0]
        info = self.steps[index]
        fields: dict[str, Any] = {"step": info.name, "duration_ms": round((end - start) * 1000, 3)}
        if info.branch:
            fields["branch"] = info.branch
        if isinstance(result, Failure):
            event = "step.stopped" if isinstance(result.error, StopFlow) else "step.failed"
            self.log.debug(event, error=_log.describe_error(result.error), **fields)
        elif result is SKIPPED:
            self.log.debug("step.skipped", **fields)
        else:
            keys = list(result) if isinstance(result, Mapping) else []
            self.log.debug("step.succeeded", keys=keys, **fields)


class Plan:
    """A compiled flow: its entry function and what is needed to explain a run."""

    __slots__ = ("__weakref__", "aio", "entry", "filename", "flow_name", "owner", "record", "steps")

    steps: Sequence[StepInfo]

    def __init__(
        self,
        *,
        entry: Callable[..., Any],
        steps: Sequence[StepInfo],
        flow_name: str,
        filename: str,
        owner: dict[int, int],
        aio: bool,
        record: bool,
    ) -> None:
        self.entry = entry
        self.steps = steps
        self.flow_name = flow_name
        self.filename = filename
        self.owner = owner
        self.aio = aio
        self.record = record

    def step_of(self, error: BaseException) -> int | None:
        """The index of the innermost step the traceback of *error* passes through."""
        found = None
        tb = error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                found = self.owner.get(tb.tb_lineno, found)
            tb = tb.tb_next
        return found

    def annotate(self, error: BaseException, inputs: str = "") -> None:
        """Name this flow and the failing step on *error* as it leaves the flow.

        A `FlowError` gets its ``flow`` and ``step`` set; any other exception a note
        (Python 3.11+), which also gives the step's *inputs* when a run knows them.
        """
        index = self.step_of(error)
        if isinstance(error, FlowError):
            if error.flow is None:
                error.flow = self.flow_name
            if error.step is None and index is not None:
                error.step = self.steps[index].name
            return
        if index is None or sys.version_info < (3, 11):
            return
        info = self.steps[index]
        where = f" (branch {info.branch})" if info.branch else ""
        note = f"raised in step {info.name!r}{where} of flow {self.flow_name!r}"
        if inputs:
            note += f"; its inputs: {inputs}"
        if not any(str(n).startswith(note.partition(";")[0]) for n in getattr(error, "__notes__", ())):
            error.add_note(note)

    def inputs(self, index: int, ctx: Mapping[str, Any], records: Records) -> str:
        """The context keys step *index* reads, each with where its value came from."""
        info = self.steps[index]
        keys = (info.fork_key,) if info.spec is None else (*info.spec.requires, *info.spec.optional)
        described = []
        for key in keys:
            if key is None or key not in ctx:
                continue
            setter = provenance(key, records, self.steps)
            described.append(f"{key} (set by {setter})" if setter else f"{key} (given)")
        return ", ".join(described)

    def tracer(self, number: int, started: float) -> Records | None:
        """A list for the raw records of run *number* that logs each step, if debug is on."""
        log = _log.debug_logger()
        if log is None:
            return None
        log = log.bind(flow=self.flow_name, run_id=format_run_id(number))
        log.debug("run.started")
        return _Tracer(log, self.steps, started)

    def finish(
        self,
        ctx: dict[str, Any],
        records: Records,
        number: int,
        started: float,
        error: BaseException | None,
        ended: float | None = None,
    ) -> Run:
        """Build the `Run` of a run that failed, stopped or was traced, and log it."""
        if ended is None:
            ended = now()
        if error is not None and not any(type(result) is Failure and result.error is error for result in records[1::3]):
            # Raised outside a step's own guard (a fork without a branch):
            # record it against the step the traceback points at.
            index = self.step_of(error)
            if index is not None:
                write(records, index, Failure(error), ended)
        run = new_run((self, number, ctx, records, error, started, ended))
        inputs = ""
        if error is not None:
            failed = run.failed_step
            if failed is not None and not isinstance(error, (StopFlow, MissingContextKey)):
                inputs = self.inputs(failed.position, ctx, records)
            self.annotate(error, inputs)
        if isinstance(records, _Tracer) or error is not None:
            _log.run_finished(run, records.log if isinstance(records, _Tracer) else None, inputs)
        return run


def _describe_keys(ctx: Mapping[Any, Any], records: Records | None, steps: Sequence[StepInfo]) -> str:
    keys = list(ctx)
    shown = []
    for key in keys[:_MAX_LISTED_KEYS]:
        label = key if type(key) is str and len(key) <= _MAX_KEY_CHARS else short_repr(key, _MAX_KEY_CHARS)
        if records is not None:
            setter = provenance(key, records, steps) if isinstance(key, str) else None
            label += f" (set by {setter})" if setter else " (given)"
        shown.append(label)
    if len(keys) > _MAX_LISTED_KEYS:
        shown.append(f"and {len(keys) - _MAX_LISTED_KEYS} more")
    return ", ".join(shown) if shown else "nothing"


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
        # The steps still in locals when step *index* starts (those before it in its block).
        self.pending_at: dict[int, tuple[tuple[int, str, str], ...]] = {}
        self.steps: list[StepInfo] = []
        self.pending_tables: list[tuple[str, dict[Any, str], str | None, int, Any]] = []
        self.warned: set[int] = set()
        # The steps and forks each function runs on its own line (sub-flows and the rest
        # of an around service included), and those an around service's rest would run.
        self.mainline: dict[str, list[int]] = {}
        self.skips: dict[int, tuple[int, ...]] = {}
        self.ns: dict[str, Any] = {
            "__builtins__": __builtins__,
            "now": now,
            "_thread": asyncio.to_thread,
            "_Next": _Next,
            "_AsyncNext": _AsyncNext,
            "_bind_app": _bind_app,
            "_unbind_app": _unbind_app,
            "_missing": self._missing,
            "_failed": self._failed,
            "_other": self._other,
            "_aother": self._aother,
            "_kwargs": self._kwargs,
            "_skipped": self._skipped,
        }

    # -- helpers the generated code calls (off the hot path) ------------------------

    def _recover(self, index: int, frame: Any, rec: Records) -> None:
        """Add to *rec* the steps before step *index* whose records are still in *frame*'s locals."""
        pending = self.pending_at.get(index)
        if pending:
            local = frame.f_locals
            for step, result, end in pending:
                write(rec, step, local[result], local[end])

    def _failed(self, index: int, error: BaseException, rec: Records) -> None:
        """Record step *index* failing with *error* (called by the plan's own frame)."""
        self._recover(index, sys._getframe(1), rec)  # noqa: SLF001 - the plan's locals
        write(rec, index, Failure(error), now())

    def _missing(self, index: int, ctx: dict[str, Any], rec: Records | None) -> None:
        if rec is not None:  # first the steps before it: the message says who set what
            self._recover(index, sys._getframe(1), rec)  # noqa: SLF001 - the plan's locals
        info = self.steps[index]
        needed = (str(info.fork_key),) if info.spec is None else info.spec.requires
        missing = [key for key in needed if key not in ctx]
        key = missing[0] if missing else needed[0]
        what = f"the fork on {key!r} needs its key" if info.spec is None else f"{info.name} needs {key!r}"
        message = f"{what}, which is not in the context"
        if len(missing) > 1:
            message += f" (nor are {', '.join(repr(k) for k in missing[1:])})"
        candidates = [
            k for k in itertools.islice(ctx, _MAX_MATCHED_KEYS) if type(k) is str and len(k) <= _MAX_KEY_CHARS
        ]
        close = difflib.get_close_matches(key, candidates, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        message += f"; the context has: {_describe_keys(ctx, rec, self.steps)}"
        if info.branch:
            message += f"; on branch {info.branch}"
        error = MissingContextKey(
            message,
            key=key,
            service=info.name,
            available=[k for k in ctx if isinstance(k, str)],
            flow=self.flow_name,
            step=info.name,
        )
        if rec is not None:
            write(rec, index, Failure(error), now())
        raise error from None  # the KeyError of the lookup is our business, not the user's

    def _kwargs(self, index: int, ctx: dict[Any, Any]) -> None:
        """After a ``**context`` call raised `TypeError`: ours when the context has non-str keys."""
        odd = [key for key in ctx if type(key) is not str]
        if not odd:
            return  # the service's own TypeError: the caller re-raises it
        info = self.steps[index]
        shown = listing((short_repr(key, 40) for key in odd), _MAX_LISTED_KEYS)
        message = (
            f"{info.name} takes the context as keyword arguments (**kwargs), but the context has "
            f"keys that are not strings: {shown}"
        )
        raise FlowError(message, flow=self.flow_name, step=info.name) from None

    def _skipped(self, index: int, rec: Records) -> None:
        """Record the steps around service *index* left out of its rest as skipped.

        It never called ``call_next``, or swallowed an exception the rest raised before
        reaching them.
        """
        # Steps are numbered in the order they run (a fork's branches, an around
        # service's rest right after it): what the rest reached is up to the highest
        # index recorded since this around service started.
        started = AROUND_STARTS - index
        reached = index
        for position in range(len(rec) - 3, -1, -3):
            recorded = rec[position]
            if recorded == started:
                break
            reached = max(reached, recorded)
        moment = now()
        for skipped in self.skips[index]:
            if skipped > reached:
                write(rec, skipped, SKIPPED, moment)

    def _other(self, index: int, ctx: dict[str, Any], result: object) -> object:
        if isinstance(result, Mapping):
            ctx.update(result)
            return result
        name = self.steps[index].name
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: close it rather than leak a warning
            message = (
                f"{name} returned an awaitable where the flow runs synchronously (a sync run, or "
                "the steps a synchronous around service wraps): declare its __call__ `async def` "
                "so the flow awaits it"
            )
            raise FlowDefinitionError(message, flow=self.flow_name, step=name)
        if index in self.warned:
            return None
        self.warned.add(index)  # once per step: a mistake in the code, not in the data
        _log.logger().warning(
            "step.return_ignored",
            flow=self.flow_name,
            step=name,
            returned=type(result).__name__,
            hint="a service returns a mapping of the keys it sets, or None",
        )
        return None

    async def _aother(self, index: int, ctx: dict[str, Any], result: object) -> object:
        if inspect.isawaitable(result):
            result = await result
            if result is None:
                return None
        return self._other(index, ctx, result)

    # -- code generation ----------------------------------------------------------

    def bind(self, name: str, value: object) -> str:
        self.ns[name] = value
        return name

    def new_step(self, name: str, branch: str, spec: Spec | None, fork_key: str | None = None) -> int:
        self.steps.append(StepInfo(name, branch, spec, fork_key))
        return len(self.steps) - 1

    def function(self, nodes: Sequence[Node], branch: str, *, aio: bool) -> str:
        """Emit a function running *nodes* in order; return its name."""
        from service_flow.flow import Fork, Step  # flow imports this module

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
        for line in self.guarded(f"{result} = {expression}", spec, index, app=app, merge=merge):
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
        from service_flow.flow import Flow

        rest_aio = aio
        thread = False
        if aio and not spec.is_async:
            inner = list(Flow(nodes=tuple(rest)).iter_steps())
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
            f"    b = {table}[v]",
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
            self.ns[f"_x{index}"] = _no_branch(
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
        )
        self.ns["_annotate"] = plan.annotate
        weakref.finalize(plan, linecache.cache.pop, filename, None)
        return plan


def _indent(lines: list[str]) -> list[str]:
    return [f"    {line}" for line in lines]


def _call_expression(call: str, call_args: list[str], spec: Spec, *, aio: bool, thread: bool) -> str:
    joined = ", ".join(call_args)
    if aio and spec.is_async:
        return f"await {call}({joined})"
    if aio and (spec.blocking or thread):
        return f"await _thread({call}{', ' if joined else ''}{joined})"
    return f"{call}({joined})"


def _no_branch(
    node: Any, default: Callable[..., Any] | None, flow_name: str, step: str, index: int
) -> Callable[..., Any]:
    known = tuple(node.branches)
    listed = ", ".join(short_repr(v, 40) for v in known[:_MAX_LISTED_VALUES])
    if len(known) > _MAX_LISTED_VALUES:
        listed += f" and {len(known) - _MAX_LISTED_VALUES} more"

    def no_branch(value: object, rec: Records | None = None) -> Callable[..., Any]:
        if default is not None:
            return default
        why = ""
        try:
            hash(value)
        except Exception as error:  # noqa: BLE001 - any failure of __hash__ is the value's
            why = f" (it cannot be hashed: {type(error).__name__})"
        message = f"the fork on {node.key!r} has no branch for {short_repr(value)}{why}; known values: {listed}"
        refused = ForkError(message, key=node.key, value=value, known=known, flow=flow_name, step=step)
        if rec is not None:  # recorded here, so that an around service swallowing it leaves it seen
            write(rec, index, Failure(refused), now())
        raise refused from None

    return no_branch


def compile_flow(flow: Flow, *, aio: bool, record: bool, trace: bool = False) -> Plan:
    """Compile *flow* into a plan (sync or async; plain, recording or traced)."""
    generator = _Generator(flow, record=record, trace=trace)
    generator.function(flow.nodes, "", aio=aio)
    return generator.finalize(aio=aio)


__all__ = ["CURRENT_APP", "Plan", "StepInfo", "as_context", "compile_flow", "now"]
