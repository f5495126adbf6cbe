"""Bounded waiting for the tests: every wait on a guest has a timeout."""

import time


def wait_for(pred, timeout, what, period=0.02):
    """Polls ``pred`` until it returns something true; returns that.

    Raises AssertionError naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting "
                                 f"for {what}")
        time.sleep(period)
