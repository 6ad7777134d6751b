"""The examples run, and say what the README says they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_orders_example_processes_every_order_against_its_local_api() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "orders.py")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "validated: every path has what it needs" in out
    assert "order 1: succeeded to ann@example.org: paid 22.5 (ch_1)" in out
    assert "order 2: succeeded INV-2: 12.0 due in 30 days" in out
    assert "order 3: stopped   only 0 lamp left" in out
    assert "order 4: stopped   order 4 asks for 0 items" in out
    assert "order 5: stopped   payment by 'bitcoin' is not accepted" in out
    assert "ChargeCard       succeeded" in out


def test_batch_example_loses_nothing_against_its_unreliable_api() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "batch.py")], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "succeeded 53, stopped 6, dead 1, not_processed 0" in out
    assert "restarts 2" in out
    assert "invoiced 53 orders; the ledger connection was opened 3 times" in out
    assert "dead letter: order 42 after" in out
    assert "order 42 has no billing address" in out
