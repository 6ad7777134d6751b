"""service_flow: split business logic into small services and compose them into flows.

::

    from service_flow import Service, StopFlow

    flow = ValidateOrder() >> ReserveStock(warehouse) < ("payment", {
        "card": ChargeCard() >> EmailReceipt(),
        "invoice": SendInvoice(),
    })
    result = flow({"order_id": 7, "payment": "card"})

A service is any callable whose parameters name the context keys it reads and which
returns a mapping of the keys it sets.  ``>>`` composes in sequence, ``<`` forks on a
context value.  See the README for the tour.
"""

from __future__ import annotations

from service_flow.clock import SYSTEM_CLOCK, Clock, SystemClock
from service_flow.driver import Drive, Driver
from service_flow.exceptions import (
    ConfigurationError,
    Fatal,
    FlowDefinitionError,
    FlowError,
    ForkError,
    InvalidInput,
    MissingContextKey,
    RemoteError,
    Retry,
    StopFlow,
    ValidationError,
)
from service_flow.flow import DEFAULT, MAX_DEPTH, Flow, Fork, Step, SubFlow, fork_on
from service_flow.policy import NO_RETRY, ErrorKind, RetryPolicy, classify
from service_flow.report import Outcome, Report, Result
from service_flow.resources import Resources
from service_flow.run import Run, RunStatus, StepRecord
from service_flow.service import Around, AsyncCallNext, CallNext, FunctionService, Service, around, service
from service_flow.validate import Validation, ValidationWarning

__version__ = "0.4.0"

__all__ = [
    "DEFAULT",
    "MAX_DEPTH",
    "NO_RETRY",
    "SYSTEM_CLOCK",
    "Around",
    "AsyncCallNext",
    "CallNext",
    "Clock",
    "ConfigurationError",
    "Drive",
    "Driver",
    "ErrorKind",
    "Fatal",
    "Flow",
    "FlowDefinitionError",
    "FlowError",
    "Fork",
    "ForkError",
    "FunctionService",
    "InvalidInput",
    "MissingContextKey",
    "Outcome",
    "RemoteError",
    "Report",
    "Resources",
    "Result",
    "Retry",
    "RetryPolicy",
    "Run",
    "RunStatus",
    "Service",
    "Step",
    "StepRecord",
    "StopFlow",
    "SubFlow",
    "SystemClock",
    "Validation",
    "ValidationError",
    "ValidationWarning",
    "__version__",
    "around",
    "classify",
    "fork_on",
    "service",
]
