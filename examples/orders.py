"""Order processing as a flow, against a small inventory/payment API served locally.

Run it with ``python examples/orders.py``: it starts the API on 127.0.0.1 (a free port,
no outside network), validates the flow, then processes a few orders and prints what
happened to each, step by step.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
import structlog

from service_flow import DEFAULT, Around, CallNext, Service, StopFlow, service

# -- the local API the services talk to ------------------------------------------------

STOCK = {"book": 3, "lamp": 0, "pen": 100}


class Api(BaseHTTPRequestHandler):
    """GET /stock/<sku> and POST /charges, in JSON."""

    def do_GET(self) -> None:
        sku = self.path.rsplit("/", 1)[-1]
        if sku not in STOCK:
            self.reply(404, {"error": f"unknown sku {sku}"})
        else:
            self.reply(200, {"sku": sku, "available": STOCK[sku]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.reply(201, {"charge_id": f"ch_{body['order_id']}", "amount": body["amount"]})

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        """Keep the example's output to the flow's story."""


# -- the services ------------------------------------------------------------------------


class ValidateOrder(Service):
    """Refuse orders that cannot be right."""

    provides = ("quantity",)

    def __call__(self, order_id: int, quantity: int) -> dict[str, int]:
        if quantity <= 0:
            raise StopFlow(f"order {order_id} asks for {quantity} items")
        return {"quantity": quantity}


class ReserveStock(Service):
    """Ask the inventory whether there is enough of the item."""

    provides = ("unit_price",)
    prices = {"book": 12.5, "lamp": 40.0, "pen": 1.2}  # noqa: RUF012 - a constant table

    def __init__(self, api: str, session: requests.Session) -> None:
        self.api = api
        self.session = session

    def __call__(self, sku: str, quantity: int) -> dict[str, float]:
        response = self.session.get(f"{self.api}/stock/{sku}", timeout=5)
        response.raise_for_status()
        if response.json()["available"] < quantity:
            raise StopFlow(f"only {response.json()['available']} {sku} left")
        return {"unit_price": self.prices[sku]}


@service(provides=("total",))
def price(unit_price: float, quantity: int, coupon: str = "") -> dict[str, float]:
    """Compute the total, with 10% off for the WELCOME coupon."""
    total = unit_price * quantity
    return {"total": round(total * 0.9 if coupon == "WELCOME" else total, 2)}


class ChargeCard(Service):
    """Charge the card through the payment API."""

    provides = ("charge_id",)

    def __init__(self, api: str, session: requests.Session) -> None:
        self.api = api
        self.session = session

    def __call__(self, order_id: int, total: float) -> dict[str, str]:
        response = self.session.post(f"{self.api}/charges", json={"order_id": order_id, "amount": total}, timeout=5)
        response.raise_for_status()
        return {"charge_id": response.json()["charge_id"]}


@service(provides=("receipt",))
def email_receipt(email: str, charge_id: str, total: float) -> dict[str, str]:
    """Pretend to email a receipt."""
    return {"receipt": f"to {email}: paid {total} ({charge_id})"}


@service(provides=("invoice",))
def send_invoice(order_id: int, total: float) -> dict[str, str]:
    """Pretend to post an invoice."""
    return {"invoice": f"INV-{order_id}: {total} due in 30 days"}


@service
def refuse_payment(payment: str) -> None:
    """Any other payment method stops the order."""
    raise StopFlow(f"payment by {payment!r} is not accepted")


class Timed(Around):
    """Wrap the rest of the flow and say how long it took (a StopFlow passes through)."""

    provides = ("elapsed_ms",)

    def __call__(self, call_next: CallNext) -> dict[str, float]:
        started = time.perf_counter()
        call_next()
        return {"elapsed_ms": round((time.perf_counter() - started) * 1000, 2)}


# -- the flow, read top to bottom like the process it implements -------------------------


def build_flow(api: str, session: requests.Session) -> Any:
    """The order flow, talking to the API at *api*."""
    return (
        Timed()
        >> ValidateOrder()
        >> ReserveStock(api, session)
        >> price
        < ("payment", {
            "card": ChargeCard(api, session) >> email_receipt,
            "invoice": send_invoice,
            DEFAULT: refuse_payment,
        })
    ).named("orders")  # fmt: skip


ORDERS = [
    {"order_id": 1, "sku": "book", "quantity": 2, "payment": "card", "email": "ann@example.org", "coupon": "WELCOME"},
    {"order_id": 2, "sku": "pen", "quantity": 10, "payment": "invoice"},
    {"order_id": 3, "sku": "lamp", "quantity": 1, "payment": "card", "email": "bo@example.org"},
    {"order_id": 4, "sku": "book", "quantity": 0, "payment": "card"},
    {"order_id": 5, "sku": "pen", "quantity": 1, "payment": "bitcoin"},
]


def main() -> None:
    """Serve the API, check the flow, process the orders."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with requests.Session() as session:
            flow = build_flow(api, session)
            print(repr(flow), end="\n\n")
            checked = flow.validate(given={"order_id", "sku", "quantity", "payment", "email"})
            print(f"validated: every path has what it needs; always set at the end: {sorted(checked.guaranteed)}\n")
            for order in ORDERS:
                run = flow.run(order)
                outcome = run.reason if run.stopped else run.context.get("receipt") or run.context.get("invoice")
                print(f"order {order['order_id']}: {run.status.value:<9} {outcome}")
                for step in run.steps:
                    keys = ", ".join(step.keys) or "-"
                    print(f"    {step.name:<16} {step.status.value:<9} {step.duration * 1000:7.2f} ms  sets {keys}")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
