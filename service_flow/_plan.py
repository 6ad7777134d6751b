"""What a compiled plan runs with: the `Plan` itself and the helpers its code calls.

`service_flow._compile` writes a plan's source; this module holds everything that source
and a run need at run time: `Plan` (the entry function and what explains a run), the
`Helpers` of one plan (recording a step that failed or was skipped, the message of a
missing key, a result that is not a dict), ``call_next`` for around services, the
tracer of a run whose debug events are on, and a fork's answer to a value it has no
branch for.  Nothing here writes code.
"""

from __future__ import annotations

import contextvars
import difflib
import inspect
import itertools
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from service_flow import _log
from service_flow._text import listing, short_repr
from service_flow.exceptions import FlowDefinitionError, FlowError, ForkError, InvalidInput, MissingContextKey, StopFlow
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
    from service_flow._nodes import Fork
    from service_flow._spec import Spec
    from service_flow.flow import Flow

now = time.perf_counter

#: The rest of the flow for the `DecoratorMiddleware` running now: (middleware, rest).
CURRENT_APP: contextvars.ContextVar[tuple[object, Callable[..., Any]] | None] = contextvars.ContextVar(
    "service_flow_current_app", default=None
)

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


class Next:
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


class AsyncNext(Next):
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


def bind_app(middleware: object, rest: Next) -> contextvars.Token[tuple[object, Callable[..., Any]] | None]:
    return CURRENT_APP.set((middleware, rest))


def unbind_app(token: contextvars.Token[tuple[object, Callable[..., Any]] | None]) -> None:
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

    __slots__ = ("__weakref__", "aio", "entry", "filename", "flow_name", "owner", "record", "source", "steps")

    steps: Sequence[StepInfo]

    def __init__(  # noqa: PLR0913 - one keyword per field
        self,
        *,
        entry: Callable[..., Any],
        steps: Sequence[StepInfo],
        flow_name: str,
        filename: str,
        owner: dict[int, int],
        aio: bool,
        record: bool,
        source: str = "",
    ) -> None:
        self.entry = entry
        self.steps = steps
        self.flow_name = flow_name
        self.filename = filename
        self.owner = owner
        self.aio = aio
        self.record = record
        #: The generated Python source (tracebacks show its lines; tests pin it).
        self.source = source

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


class Helpers:
    """The run-time helpers of one plan, which its generated code calls off the hot path.

    They read what the generator learnt of the plan's steps: their infos, the steps still
    in locals when a step starts, the steps an around service's rest would run.
    """

    def __init__(self, flow_name: str, steps: Sequence[StepInfo]) -> None:
        self.flow_name = flow_name
        self.steps = steps
        # The steps still in locals when step *index* starts (those before it in its block).
        self.pending_at: dict[int, tuple[tuple[int, str, str], ...]] = {}
        # The steps an around service's rest would run, by the around service's index.
        self.skips: dict[int, tuple[int, ...]] = {}
        self.warned: set[int] = set()

    def recover(self, index: int, frame: Any, rec: Records) -> None:
        """Add to *rec* the steps before step *index* whose records are still in *frame*'s locals."""
        pending = self.pending_at.get(index)
        if pending:
            local = frame.f_locals
            for step, result, end in pending:
                write(rec, step, local[result], local[end])

    def failed(self, index: int, error: BaseException, rec: Records) -> None:
        """Record step *index* failing with *error* (called by the plan's own frame)."""
        self.recover(index, sys._getframe(1), rec)  # noqa: SLF001 - the plan's locals
        write(rec, index, Failure(error), now())

    def missing(self, index: int, ctx: dict[str, Any], rec: Records | None) -> None:
        if rec is not None:  # first the steps before it: the message says who set what
            self.recover(index, sys._getframe(1), rec)  # noqa: SLF001 - the plan's locals
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

    def kwargs(self, index: int, ctx: dict[Any, Any]) -> None:
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

    def skipped(self, index: int, rec: Records) -> None:
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

    def other(self, index: int, ctx: dict[str, Any], result: object) -> object:
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

    async def aother(self, index: int, ctx: dict[str, Any], result: object) -> object:
        if inspect.isawaitable(result):
            result = await result
            if result is None:
                return None
        return self.other(index, ctx, result)


def no_branch(
    node: Fork, default: Callable[..., Any] | None, flow_name: str, step: str, index: int
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


__all__ = ["CURRENT_APP", "Helpers", "Plan", "StepInfo", "as_context", "now"]
