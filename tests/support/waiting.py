"""Polling until something is true, with and without a Textual pilot."""

from __future__ import annotations

import time


def wait_for(predicate, what: str = "condition not reached in time", timeout: float = 30.0,
             step: float = 0.02):
    """Poll ``predicate`` until it returns something true (returned), or fail after
    ``timeout`` seconds saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(what)
        time.sleep(step)


async def until(pilot, predicate, timeout: float = 20.0) -> None:
    """:func:`wait_for` for a Textual pilot: the app keeps running between polls."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)
