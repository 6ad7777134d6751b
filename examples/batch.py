"""A nightly batch: invoice every shipped order through an unreliable billing API.

Run it with ``python examples/batch.py``.  It starts a billing API on 127.0.0.1 that
answers one request in three with ``503 Service Unavailable`` (some with a
``Retry-After``), drops its database connection now and then, and refuses one order
for good.  A `Driver` feeds 60 orders through a flow of HTTP services on 4 threads: the
503s are retried with backoff, a lost connection restarts the processor (the session is
closed and opened again), and the one bad order ends as a dead letter.  Nothing is lost.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from service_flow import Driver, Fatal, RetryPolicy, Service, StopFlow
from service_flow.http import Client

# -- the billing API ----------------------------------------------------------------------

LOCK = threading.Lock()
RANDOM = random.Random(7)  # noqa: S311 - a seeded, reproducible amount of trouble
INVOICED: dict[int, float] = {}


class Billing(BaseHTTPRequestHandler):
    """GET /orders/<id> and POST /invoices, failing like real services do."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Keep-alive without Nagle: small replies are not held back waiting for ACKs.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        if self.unavailable():
            return
        order = int(self.path.rsplit("/", 1)[-1])
        self.reply(200, {"order": {"id": order, "total": round(9.5 * order, 2), "shipped": order % 10 != 0}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.unavailable():
            return
        if body["order_id"] == 42:
            self.reply(422, {"error": "order 42 has no billing address"})
            return
        with LOCK:
            INVOICED[body["order_id"]] = body["amount"]
        self.reply(201, {"invoice": f"INV-{body['order_id']}"})

    def unavailable(self) -> bool:
        with LOCK:
            draw = RANDOM.random()
        if draw < 1 / 3:
            self.reply(503, {"error": "busy"}, retry_after="0.05" if draw < 0.1 else None)
            return True
        return False

    def reply(self, status: int, payload: dict[str, Any], retry_after: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        """Keep the example's output to the batch's story."""


# -- the services -------------------------------------------------------------------------


class SkipUnshipped(Service):
    """Only shipped orders are invoiced."""

    def __call__(self, order: dict[str, Any]) -> None:
        if not order["shipped"]:
            raise StopFlow(f"order {order['id']} has not shipped")


class Ledger(Service):
    """Writes each invoice to a ledger connection that sometimes drops."""

    provides = ("booked",)

    def __init__(self) -> None:
        self.opened = 0
        self.connected = False
        self.setup()

    def setup(self) -> None:
        self.opened += 1
        self.connected = True

    def teardown(self) -> None:
        self.connected = False

    def __call__(self, invoice: str) -> dict[str, Any]:
        if not self.connected:
            raise Fatal("the ledger connection is closed")
        if invoice in ("INV-13", "INV-27") and self.opened < 3:
            self.connected = False
            raise Fatal("the ledger dropped the connection")
        return {"booked": True}


def main() -> None:
    # The application decides what to log: here errors only (the dead letter), so the
    # output tells the batch's story.  Drop this line to watch every retry and restart.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Billing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    billing = Client(f"http://127.0.0.1:{server.server_port}")
    ledger = Ledger()

    invoice_shipped_orders = (
        billing.get("/orders/{order_id}").capture("order", "$.order")
        >> SkipUnshipped()
        >> billing.post(
            "/invoices",
            json=lambda ctx: {"order_id": ctx["order"]["id"], "amount": ctx["order"]["total"]},
            idempotent=True,  # the API only invoices once per order
        ).capture("invoice", "$.invoice")
        >> ledger
    ).named("invoice shipped orders")
    invoice_shipped_orders.validate(given=["order_id"])

    driver = Driver(
        invoice_shipped_orders,
        workers=4,
        retry=RetryPolicy(max_attempts=20, initial=0.01, max_delay=0.2),
        restart=RetryPolicy(initial=0.01),
        input_id="order_id",
        seed=1,
    )
    report = driver.run({"order_id": n} for n in range(1, 61))
    server.shutdown()
    billing.teardown()

    print(report)
    print(f"invoiced {len(INVOICED)} orders; the ledger connection was opened {ledger.opened} times")
    for letter in report.dead_letters:
        print(f"dead letter: order {letter.id} after {letter.attempts} attempt(s): {letter.error}")
    print(f"not processed: {len(report.not_processed)}")


if __name__ == "__main__":
    main()
