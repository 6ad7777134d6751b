"""Helpers for testing services and flows without mocking service_flow's internals.

`FakeClock` replaces the real clock wherever the library takes a ``clock=``: sleeping
advances its time instantly and every wait is recorded, so tests of retries, backoff,
polling and rate limits are fast and deterministic.

This module is a re-export list: each helper lives in a private module of its own.
"""

from __future__ import annotations

from service_flow.testing._clock import FakeClock

__all__ = ["FakeClock"]
