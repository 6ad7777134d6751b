"""Request services driven by the driver against a server that fails half its requests."""

from __future__ import annotations

import random
import re
import threading
from typing import TYPE_CHECKING

import pytest
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from service_flow import Driver, Outcome, RetryPolicy
from service_flow.http import Client, Request
from service_flow.testing import FakeClock

if TYPE_CHECKING:
    from pytest_httpserver import HTTPServer


class HalfBroken:
    """Answers half its requests, drawn at random (seeded), with 503 (some with Retry-After)."""

    def __init__(self) -> None:
        self.rng = random.Random(5)
        self.lock = threading.Lock()
        self.saved: list[int] = []
        self.failures = 0

    def __call__(self, request: WRequest) -> WResponse:
        with self.lock:
            fail = self.rng.random() < 0.5
            if fail:
                self.failures += 1
        if fail:
            headers = {"Retry-After": "1"} if self.failures % 4 == 0 else {}
            return WResponse("unavailable", status=503, headers=headers)
        if request.method == "GET":
            order = int(request.path.rsplit("/", 1)[1])
            return WResponse(f'{{"order": {{"id": {order}, "total": {order * 10}}}}}', content_type="application/json")
        with self.lock:
            self.saved.append(request.get_json()["id"])
        return WResponse('{"saved": true}', status=201, content_type="application/json")


@pytest.mark.parametrize("workers", [1, 8])
def test_the_driver_recovers_from_a_server_failing_half_its_requests(httpserver: HTTPServer, workers: int) -> None:
    server = HalfBroken()
    httpserver.expect_request(re.compile(r"^/orders/\d+$"), method="GET").respond_with_handler(server)
    httpserver.expect_request("/invoices", method="POST").respond_with_handler(server)
    client = Client(httpserver.url_for(""))
    flow = client.get("/orders/{order_id}").capture("order", "$.order") >> Request.post(
        "/invoices", client=client, json=lambda ctx: {"id": ctx["order"]["id"]}, idempotent=True
    ).check(status=201)
    clock = FakeClock()
    results = []
    report = Driver(
        flow,
        workers=workers,
        retry=RetryPolicy(max_attempts=50, initial=0.1, jitter=0),
        clock=clock,
        on_result=results.append,
    ).run({"order_id": n} for n in range(40))
    client.teardown()
    assert report.succeeded == 40, report.dead_letters
    assert report.retries > 0
    assert sorted(server.saved) == list(range(40))  # each invoice saved exactly once
    assert all(r.outcome is Outcome.SUCCEEDED for r in results)
    delays = {getattr(error, "delay", None) for result in results for error in result.errors}
    assert 1 in delays  # Retry-After was read into the Retry
    assert clock.sleeps  # and the driver waited on its clock, not for real
