"""Slow C work off the event loop: under gevent (the web workers) every socket and request of a
process shares one thread, and a password check (scrypt, some 100 ms of CPU in C that releases the
GIL) would stall all of them; on gevent's thread pool it stalls none. Without gevent, a plain call."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def off_loop(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)`, on a real thread of gevent's pool when this process runs gevent's loop."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        import gevent

        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)
