"""Code written for the original service-flow 0.3.1 runs unchanged on this package.

Each test encodes a behaviour of 0.3.1 as its README documents it (or as its source,
``service_flow/flow.py`` of 0.3.1, implements it), written the way code for 0.3.1 was
written: ``Middleware`` subclasses configured in ``__init__`` and called with context
keys by name, ``>>`` chains, ``<`` forks, ``DecoratorMiddleware`` with ``self.app``.

The tests marked *improvement* assert a deliberate difference from 0.3.1 and say what
0.3.1 did instead.
"""

from __future__ import annotations

import asyncio
import collections
import inspect

import pytest

import service_flow
from service_flow.exceptions import FatalException, ForkException, RetryException, StopFlowException
from service_flow.flow import Flow
from service_flow.middleware import DecoratorMiddleware, LambdaMiddleware, Middleware

# -- services written as for 0.3.1 ------------------------------------------------------


class InplaceModification(Middleware):
    """The README's basic service, verbatim (it ignores its argument, as written there)."""

    def __init__(self, increment):  # initialization
        self.increment = 1

    def __call__(self, bar: list):  # service call
        return {"bar": [i + self.increment for i in bar]}


class Total(Middleware):
    def __call__(self, bar):
        return {"total": sum(bar)}


class Kind(Middleware):
    def __call__(self, total):
        return {"kind": "big" if total > 10 else "small"}


class Label(Middleware):
    def __init__(self, text):
        self.text = text

    def __call__(self, total):
        return {"label": f"{self.text}:{total}"}


class Double(Middleware):
    def __call__(self, total):
        return {"total": total * 2}


class Divide(Middleware):
    def __call__(self, total, by):
        return {"ratio": total / by}


class ExceptionHandler(DecoratorMiddleware):
    """The README's decorator service."""

    def __call__(self, context):
        try:
            self.app(context)
        except ZeroDivisionError:
            return {"error": "decided by zero"}


class Trace(DecoratorMiddleware):
    """Records when it enters, and which keys exist when the flow it wraps has run."""

    def __init__(self, tag):
        super().__init__()
        self.tag = tag

    def __call__(self, context):
        context.setdefault("trace", []).append(f"{self.tag}>")
        self.app(context)
        seen = ",".join(key for key in ("total", "kind", "label", "ratio") if key in context)
        context["trace"].append(f"<{self.tag}:{seen}")


class AsyncTotal(Middleware):
    async def __call__(self, bar):
        await asyncio.sleep(0)
        return {"total": sum(bar)}


class AsyncKind(Middleware):
    async def __call__(self, total):
        await asyncio.sleep(0)
        return {"kind": "big" if total > 10 else "small"}


def readme_fork_flow():
    # The README's fork example: `Service1() >> Service2(*args) < ('var', {...})`.
    return InplaceModification(1) >> Total() >> Kind() < (
        "kind",
        {
            "big": (Label("B") >> Double()),
            "small": (Double() >> Label("S")),
        },
    )


# -- imports and exceptions ---------------------------------------------------------------


def test_original_exception_names_are_the_new_classes():
    assert StopFlowException is service_flow.StopFlow
    assert RetryException is service_flow.Retry
    assert FatalException is service_flow.Fatal
    assert ForkException is service_flow.ForkError


def test_fork_exception_is_a_fatal_exception():
    assert issubclass(ForkException, FatalException)


def test_original_exceptions_are_exceptions():
    for cls in (StopFlowException, RetryException, FatalException, ForkException):
        assert issubclass(cls, Exception)


def test_original_module_paths_import():
    from service_flow.fork import Fork  # noqa: F401 - the import is the test

    assert Flow is service_flow.Flow
    assert issubclass(DecoratorMiddleware, Middleware)
    assert issubclass(LambdaMiddleware, Middleware)


def test_original_exception_keeps_its_message_in_args():
    error = StopFlowException("bad input")
    assert error.args == ("bad input",)
    assert str(error) == "bad input"


def test_original_exception_accepts_several_arguments():
    error = RetryException("timed out", 3)
    assert error.args == ("timed out", 3)


def test_str_of_original_exception_built_from_another_exception():
    # 0.3.1's exceptions were plain Exception subclasses: str() of one gives its argument's.
    assert str(RetryException(ValueError("timeout"))) == "timeout"
    assert str(FatalException(42)) == "42"


def test_original_exception_built_from_another_exception_keeps_it_in_args():
    cause = ValueError("timeout")
    assert RetryException(cause).args == (cause,)


def test_stop_flow_exception_propagates_and_skips_the_rest():
    class Stop(Middleware):
        def __call__(self, total):
            if total < 0:
                raise StopFlowException("negative")

    ran = []
    flow = Total() >> Stop() >> (lambda total: ran.append(total))  # noqa: PLW0108 - reads `total`
    with pytest.raises(StopFlowException) as caught:
        flow({"bar": [-1]})
    assert caught.value.args == ("negative",)
    assert ran == []


def test_fatal_exception_propagates():
    class Broken(Middleware):
        def __call__(self, total):
            raise FatalException("connection lost")

    with pytest.raises(FatalException):
        (Total() >> Broken())({"bar": [1]})


# -- basic flows ---------------------------------------------------------------------------


def test_readme_basic_service_in_a_chain():
    flow = InplaceModification(1) >> Total() >> Kind()
    assert flow({"bar": [1, 2, 3]}) == {"bar": [2, 3, 4], "total": 9, "kind": "small"}


def test_service_configuration_from_init_is_used_on_every_call():
    flow = Total() >> Label("sum")
    assert flow({"bar": [1, 2]})["label"] == "sum:3"
    assert flow({"bar": [5]})["label"] == "sum:5"


def test_later_service_overwrites_a_key():
    flow = Total() >> Double() >> Double()
    assert flow({"bar": [3]})["total"] == 12


def test_parameter_with_default_uses_default_when_key_is_absent():
    class Scale(Middleware):
        def __call__(self, total, factor=3):
            return {"scaled": total * factor}

    flow = Total() >> Scale()
    assert flow({"bar": [2]})["scaled"] == 6
    assert flow({"bar": [2], "factor": 10})["scaled"] == 20


def test_is_async_property_of_a_middleware():
    assert AsyncTotal().is_async is True
    assert Total().is_async is False


def test_flow_called_without_context():
    flow = Flow(lambda: {"started": True})
    assert flow() == {"started": True}


def test_flow_called_without_context_twice_starts_fresh():
    # Improvement: 0.3.1's `__call__(self, context={})` shared one default dict between calls.
    flow = Flow(lambda: {"started": True})
    first = flow()
    first["extra"] = 1
    assert flow() == {"started": True}


# -- the context parameter -----------------------------------------------------------------


def test_single_context_parameter_receives_the_whole_context():
    class Keys(Middleware):
        def __call__(self, context):
            return {"keys": sorted(context)}

    flow = Total() >> Keys()
    assert flow({"bar": [1], "x": 0})["keys"] == ["bar", "total", "x"]


def test_context_parameter_mutations_are_seen_by_later_services():
    class SetInPlace(Middleware):
        def __call__(self, context):
            context["total"] = 100

    flow = Total() >> SetInPlace() >> Label("t")
    assert flow({"bar": [1]})["label"] == "t:100"


def test_context_with_other_parameters_is_an_ordinary_key():
    class Both(Middleware):
        def __call__(self, context, total):
            return {"got": (context, total)}

    flow = Total() >> Both()
    assert flow({"bar": [1], "context": "value"})["got"] == ("value", 1)


# -- return values -------------------------------------------------------------------------


def test_service_returning_none_changes_nothing():
    class Nothing(Middleware):
        def __call__(self, total):
            return None

    assert (Total() >> Nothing())({"bar": [1]}) == {"bar": [1], "total": 1}


@pytest.mark.parametrize("returned", ["text", 42, [1, 2], ("a", 1)])
def test_service_returning_a_non_dict_is_ignored(returned):
    flow = Total() >> (lambda total: returned) >> Label("after")  # noqa: ARG005 - reads `total`
    assert flow({"bar": [1]}) == {"bar": [1], "total": 1, "label": "after:1"}


def test_service_returning_a_dict_subclass_is_merged():
    flow = Total() >> (lambda total: collections.OrderedDict(ordered=total))
    assert flow({"bar": [4]})["ordered"] == 4


# -- lambda services -----------------------------------------------------------------------


def test_lambda_services_after_the_first_step():
    flow = Total() >> (lambda total: {"negative": -total}) >> (lambda negative: {"back": -negative})
    assert flow({"bar": [1, 2]}) == {"bar": [1, 2], "total": 3, "negative": -3, "back": 3}


def test_flow_of_a_lambda_then_services():
    flow = Flow(lambda bar: {"count": len(bar)}) >> Total()
    assert flow({"bar": [1, 2]}) == {"bar": [1, 2], "count": 2, "total": 3}


def test_lambda_middleware_wraps_a_function():
    flow = Total() >> LambdaMiddleware(lambda total: {"half": total / 2})
    assert flow({"bar": [3]})["half"] == 1.5


# -- forks ---------------------------------------------------------------------------------


def test_readme_fork_takes_the_branch_of_the_value():
    flow = readme_fork_flow()
    assert flow({"bar": [1, 2]}) == {"bar": [2, 3], "total": 10, "kind": "small", "label": "S:10"}
    assert flow({"bar": [5, 6]}) == {"bar": [6, 7], "total": 26, "kind": "big", "label": "B:13"}


def test_fork_binds_after_the_whole_chain():
    # `a >> b < (...)` is `(a >> b) < (...)`: the fork sees what b set.
    doubled = Flow(lambda total: {"path": "doubled"})  # noqa: ARG005 - reads `total`
    flow = Total() >> Double() < ("total", {2: doubled})
    assert flow({"bar": [1]})["path"] == "doubled"


def test_fork_on_a_value_set_by_the_previous_step():
    flow = Total() >> Kind() < ("kind", {"big": Flow(Label("B")), "small": Flow(Label("S"))})
    assert flow({"bar": [20]})["label"] == "B:20"
    assert flow({"bar": [2]})["label"] == "S:2"


def test_step_after_a_parenthesised_fork_runs_after_the_branch():
    flow = (Total() >> Kind() < ("kind", {"small": Double() >> Label("S")})) >> Label("after")
    assert flow({"bar": [1]}) == {"bar": [1], "total": 2, "kind": "small", "label": "after:2"}


def test_fork_without_a_branch_for_the_value_raises_fork_exception():
    flow = Total() >> Kind() < ("kind", {"big": Flow(Label("B"))})
    with pytest.raises(ForkException):
        flow({"bar": [1]})


def test_fork_without_a_branch_is_a_fatal_exception():
    flow = Total() >> Kind() < ("kind", {"big": Flow(Label("B"))})
    with pytest.raises(FatalException):
        flow({"bar": [1]})


# -- decorator services --------------------------------------------------------------------


def test_readme_exception_handler_catches_and_its_return_is_merged():
    flow = Total() >> ExceptionHandler() >> Divide() >> Label("x")
    assert flow({"bar": [4], "by": 0}) == {"bar": [4], "by": 0, "total": 4, "error": "decided by zero"}


def test_readme_exception_handler_lets_the_rest_run_when_nothing_fails():
    flow = Total() >> ExceptionHandler() >> Divide() >> Label("x")
    assert flow({"bar": [4], "by": 2}) == {"bar": [4], "by": 2, "total": 4, "ratio": 2.0, "label": "x:4"}


def test_decorator_as_first_service_wraps_the_whole_flow():
    flow = ExceptionHandler() >> Total() >> Divide()
    assert flow({"bar": [4], "by": 0}) == {"bar": [4], "by": 0, "total": 4, "error": "decided by zero"}


def test_decorator_in_a_chain_wraps_every_later_step():
    flow = Total() >> Trace("t") >> Kind() >> Label("L")
    assert flow({"bar": [1]})["trace"] == ["t>", "<t:total,kind,label"]


def test_nested_decorators_in_one_chain():
    flow = Total() >> Trace("o") >> Kind() >> Trace("i") >> Label("L")
    assert flow({"bar": [1]})["trace"] == ["o>", "i>", "<i:total,kind,label", "<o:total,kind,label"]


def test_decorator_in_a_chain_wraps_a_fork_after_it():
    # Difference: 0.3.1's `<` appended the fork to the outermost flow, outside a decorator
    # written before it (while `>>` after the fork went inside); here a decorator wraps
    # everything after it in its chain, forks included, as the README describes.
    flow = Total() >> ExceptionHandler() >> Kind() < ("kind", {"small": Divide() >> Label("L")})
    assert flow({"bar": [1], "by": 0}) == {
        "bar": [1],
        "by": 0,
        "total": 1,
        "kind": "small",
        "error": "decided by zero",
    }


def test_decorator_in_a_right_operand_flow_wraps_only_that_flow():
    # 0.3.1 raised AttributeError ('Flow' object has no attribute 'is_async') for any
    # flow on the right of >>; the rule asserted is the one its __rshift__ implements:
    # a decorator's `app` is the flow it was composed with, so in `x >> (deco >> y) >> z`
    # it wraps y and not z.
    flow = Total() >> (Trace("t") >> Kind()) >> Label("L")
    result = flow({"bar": [1]})
    assert result["trace"] == ["t>", "<t:total,kind"]
    assert result["label"] == "L:1"


def test_decorator_app_runs_the_rest_on_the_same_context():
    class Same(DecoratorMiddleware):
        def __call__(self, context):
            return {"same": self.app(context) is context}

    assert (Total() >> Same() >> Kind())({"bar": [1]})["same"] is True


def test_decorator_can_run_the_rest_again():
    class Retrying(DecoratorMiddleware):
        def __call__(self, context):
            for attempt in range(1, 4):
                try:
                    self.app(context)
                except RetryException:
                    continue
                return {"attempts": attempt}
            return None

    class Flaky(Middleware):
        def __init__(self):
            self.calls = 0

        def __call__(self, total):
            self.calls += 1
            if self.calls < 3:
                raise RetryException("again")
            return {"ok": total}

    flow = Total() >> Retrying() >> Flaky()
    assert flow({"bar": [2]}) == {"bar": [2], "total": 2, "ok": 2, "attempts": 3}


def test_decorator_without_super_init_still_works():
    class NoSuper(DecoratorMiddleware):
        def __init__(self, key):
            self.key = key

        def __call__(self, context):
            self.app(context)
            return {self.key: True}

    assert (Total() >> NoSuper("wrapped") >> Kind())({"bar": [1]})["wrapped"] is True


def test_decorator_app_can_be_assigned_for_a_unit_test():
    handler = ExceptionHandler()
    assert handler.app is None

    def divide_by_zero(context):
        return 1 / 0

    handler.app = divide_by_zero
    assert handler({}) == {"error": "decided by zero"}


# -- async services ------------------------------------------------------------------------


def test_async_service_makes_the_flow_return_an_awaitable():
    flow = AsyncTotal() >> Kind() >> Label("a")
    pending = flow({"bar": [1, 2]})
    assert inspect.isawaitable(pending)
    assert asyncio.run(pending) == {"bar": [1, 2], "total": 3, "kind": "small", "label": "a:3"}


def test_async_service_after_sync_services_and_a_lambda():
    flow = Total() >> AsyncKind() >> (lambda kind: {"twice": kind * 2})
    assert asyncio.run(flow({"bar": [11]})) == {"bar": [11], "total": 11, "kind": "big", "twice": "bigbig"}


def test_async_decorator_awaits_the_rest():
    class AsyncTrace(DecoratorMiddleware):
        async def __call__(self, context):
            context["before"] = sorted(context)
            await self.app(context)
            return {"after": sorted(context)}

    flow = Total() >> AsyncTrace() >> AsyncKind()
    assert asyncio.run(flow({"bar": [1]})) == {
        "bar": [1],
        "total": 1,
        "before": ["bar", "total"],
        "kind": "small",
        "after": ["bar", "before", "kind", "total"],
    }


def test_fork_inside_an_async_flow():
    # Improvement: 0.3.1 raised AttributeError ('Fork' object has no attribute 'is_async').
    flow = AsyncTotal() >> Kind() < ("kind", {"small": Label("s") >> Double(), "big": Flow(Label("b"))})
    assert asyncio.run(flow({"bar": [1]})) == {"bar": [1], "total": 2, "kind": "small", "label": "s:1"}


def test_async_service_inside_a_fork_branch():
    # Improvement: 0.3.1 could not run a fork in an async flow at all.
    flow = Total() >> Kind() < ("kind", {"big": AsyncKind() >> Label("b"), "small": Flow(Label("s"))})
    assert asyncio.run(flow({"bar": [20]})) == {"bar": [20], "total": 20, "kind": "big", "label": "b:20"}


# -- deliberate improvements ---------------------------------------------------------------


def test_flow_does_not_mutate_the_callers_context():
    # Improvement: 0.3.1 updated the caller's dict in place and returned it.
    given = {"bar": [1]}
    result = (Total() >> Kind())(given)
    assert given == {"bar": [1]}
    assert result is not given
    assert result == {"bar": [1], "total": 1, "kind": "small"}


def test_async_flow_does_not_mutate_the_callers_context():
    # Improvement: 0.3.1 updated the caller's dict in place.
    given = {"bar": [1]}
    result = asyncio.run((AsyncTotal() >> Kind())(given))
    assert given == {"bar": [1]}
    assert result == {"bar": [1], "total": 1, "kind": "small"}


def test_missing_required_key_raises_missing_context_key():
    # Improvement: 0.3.1 called the service without the key, raising TypeError.
    with pytest.raises(service_flow.MissingContextKey) as caught:
        (Total() >> Kind())({})
    assert caught.value.key == "bar"


def test_missing_key_after_a_step_names_the_step():
    # Improvement: 0.3.1 raised TypeError.
    with pytest.raises(service_flow.MissingContextKey) as caught:
        (Total() >> Divide())({"bar": [1]})
    assert caught.value.key == "by"
    assert caught.value.service == "Divide"


def test_plain_async_function_is_awaited():
    # Improvement: 0.3.1 wrapped every function as a sync LambdaMiddleware, so the
    # coroutine was never awaited and its result silently dropped.
    async def lookup(total):
        await asyncio.sleep(0)
        return {"looked_up": total}

    flow = Total() >> lookup
    assert flow.is_async
    assert asyncio.run(flow({"bar": [2]})) == {"bar": [2], "total": 2, "looked_up": 2}


def test_awaitable_returned_in_a_sync_flow_is_an_error():
    # Improvement: 0.3.1 ignored a returned coroutine (a non-dict) and never awaited it.
    async def lookup(total):
        return {"looked_up": total}

    flow = Total() >> (lambda total: lookup(total))  # noqa: PLW0108 - a sync callable returning a coroutine
    with pytest.raises(service_flow.FlowDefinitionError):
        flow({"bar": [2]})


def test_awaitable_returned_by_a_lambda_in_an_async_flow_is_awaited():
    # Improvement: 0.3.1 treated lambdas as sync and dropped the coroutine.
    async def lookup(total):
        return {"looked_up": total}

    flow = AsyncTotal() >> (lambda total: lookup(total))  # noqa: PLW0108 - a sync callable returning a coroutine
    assert asyncio.run(flow({"bar": [2]})) == {"bar": [2], "total": 2, "looked_up": 2}


def test_sync_decorator_around_async_steps_is_an_error():
    # Improvement: in 0.3.1, `self.app(context)` returned a coroutine the sync decorator
    # never awaited, and the wrapped steps silently did not run.
    flow = Total() >> Trace("t") >> AsyncKind()
    with pytest.raises(service_flow.FlowDefinitionError):
        asyncio.run(flow({"bar": [1]}))


def test_one_decorator_instance_in_two_flows():
    # Improvement: 0.3.1 stored the wrapped flow on the instance (`self.app`), so the
    # second flow built with a decorator took it over from the first.
    handler = ExceptionHandler()
    first = Total() >> handler >> Divide()
    second = Total() >> handler >> Label("second")
    assert first({"bar": [4], "by": 0})["error"] == "decided by zero"
    assert second({"bar": [4]})["label"] == "second:4"
    assert first({"bar": [4], "by": 2})["ratio"] == 2.0
