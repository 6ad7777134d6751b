"""The library's structlog logger and the events it emits.

We never configure structlog: the application does.  Events go through the logger named
``service_flow``; per-step events are at debug level and are only produced when the
configured logger says debug is enabled, so a filtering configuration costs nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import structlog

from service_flow.exceptions import ForkError
from service_flow.run import RunStatus

if TYPE_CHECKING:
    from service_flow.run import Run

LOGGER_NAME = "service_flow"
PROXY = structlog.get_logger(LOGGER_NAME)
_MAX_ERROR_CHARS = 300


# Set once structlog has cached its logger for us (``cache_logger_on_first_use``): from
# then on structlog itself hands out that same logger forever, so we may keep it too.
cached: Any = None
#: ``cached.is_enabled_for`` when that logger has it: run() asks it about debug first.
debug_check: Any = None
#: Whether debug is on, when the cached logger's level can never change (structlog's
#: own filtering loggers fix it in their class); ``None`` when it has to be asked.
debug_fixed: bool | None = None


class _Unknown:
    """Stands in for structlog's configuration if its layout ever changes: always ask."""

    is_configured = True
    default_wrapper_class = None


# structlog's configuration object, which configure() and reset_defaults() change in
# place: reading two of its attributes tells, in nanoseconds, that debug is off because
# nothing is configured or because the configured wrapper class filters debug out.
CONFIG: Any = getattr(getattr(structlog, "_config", None), "_CONFIG", None) or _Unknown()
#: The configured wrapper class last seen filtering debug out (its level is fixed).
quiet_class: Any = None


def quiet() -> bool:
    """Whether debug events are off for sure, decided without building a logger."""
    if cached is None:
        config = CONFIG
        return not config.is_configured or config.default_wrapper_class is quiet_class
    return debug_fixed is False


def logger() -> Any:
    """The bound logger as structlog is configured now (cached if the app caches)."""
    global cached, debug_check, debug_fixed  # noqa: PLW0603 - a write-once cache
    if cached is not None:
        return cached
    log = PROXY.bind()
    if "bind" in vars(PROXY):  # the proxy replaced its bind() by its cached logger's
        cached = log
        debug_check = getattr(log, "is_enabled_for", None)
        if debug_check is not None and type(log).__module__ == "structlog._native":
            debug_fixed = bool(debug_check(logging.DEBUG))  # make_filtering_bound_logger's
    return log


def debug_enabled(log: Any) -> bool:
    """Whether *log* would emit a debug event (``True`` when it cannot tell)."""
    try:
        return bool(log.is_enabled_for(logging.DEBUG))  # structlog's own and stdlib loggers
    except AttributeError:
        pass
    check = getattr(log, "isEnabledFor", None)
    if check is None:
        return True
    try:
        return bool(check(logging.DEBUG))
    except Exception:  # noqa: BLE001 - a logger we cannot query logs everything
        return True


def debug_logger() -> Any | None:
    """The library logger when it would emit a debug event, else ``None`` (cheap).

    Unconfigured, structlog prints every event: a library must not fill an
    application's output with debug lines nobody asked for, so that counts as off.
    """
    global quiet_class  # noqa: PLW0603 - a cache of the configuration's verdict
    if quiet():
        return None
    wrapper_class = CONFIG.default_wrapper_class
    log = cached if cached is not None else logger()
    try:
        enabled = log.is_enabled_for(logging.DEBUG)
    except AttributeError:
        enabled = debug_enabled(log)
    if not enabled or not structlog.is_configured():
        if not enabled and cached is None and type(log) is wrapper_class and _level_is_fixed(wrapper_class):
            quiet_class = wrapper_class  # the next runs need not build a logger to know
        return None
    return log


def _level_is_fixed(wrapper_class: Any) -> bool:
    # make_filtering_bound_logger(level) fixes the level in the class it makes.
    return getattr(wrapper_class, "__module__", None) == "structlog._native"


def describe_error(error: BaseException) -> str:
    """``Type: message``, cut short, for a log field (a fork's unknown value left out)."""
    try:
        text = f"{type(error).__name__}: {error.redacted() if isinstance(error, ForkError) else error}"
    except Exception:  # noqa: BLE001 - a service's exception whose __str__ raises must not end a run
        text = f"{type(error).__name__}: <str() of the error raised>"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def run_finished(run: Run, log: Any | None, inputs: str = "") -> None:
    """Log how *run* ended: debug on success, info when stopped, warning when failed.

    *inputs* names the keys the failing step read and which step set each.
    """
    if log is None:
        log = logger().bind(flow=run.flow, run_id=run.run_id)
    duration_ms = round(run.duration * 1000, 3)
    step = getattr(run.error, "step", None)
    if run.status is RunStatus.SUCCEEDED:
        log.debug("run.succeeded", duration_ms=duration_ms)
    elif run.status is RunStatus.STOPPED:
        log.info("run.stopped", reason=run.reason, step=step, duration_ms=duration_ms)
    else:
        assert run.error is not None  # noqa: S101 - a failed run has an error
        if step is None and run.failed_step is not None:
            step = run.failed_step.name
        fields = {"inputs": inputs} if inputs else {}
        log.warning("run.failed", error=describe_error(run.error), step=step, duration_ms=duration_ms, **fields)
