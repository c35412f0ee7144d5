"""One network event loop per process, so every caller of one account shares one connection pool.

An ``httpx.AsyncClient`` belongs to the event loop it first ran on, and :class:`refstudio.Studio`
runs each network verb in an event loop of its own (``asyncio.run``, in whichever thread called
it). Four threads each calling ``Studio.generate`` used to open four pools of eight connections
against one account. Instead, every HTTP request of a provider runs here: on one daemon thread
whose loop owns the clients, and callers on any loop await it (:func:`run_here`). A hop between
loops costs tens of microseconds; a request costs milliseconds.

The loop starts on first use, is closed at interpreter exit (clients first), and is forgotten in
a forked child (its thread does not exist there).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["at_close", "run_here"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
#: Coroutine functions run on the network loop before it stops (closing shared clients).
_closers: list[Callable[[], Awaitable[None]]] = []


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def network_loop() -> asyncio.AbstractEventLoop:
    """The process's network loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(target=_serve, args=(loop, ready), daemon=True,
                                      name="refstudio-network")
            thread.start()
            ready.wait()
            _loop, _thread = loop, thread
        return _loop


async def run_here(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the network loop, from any event loop.

    Cancelling the caller cancels ``coro`` on the network loop too (its ``finally`` blocks run
    there, so a connection slot it holds is always given back).
    """
    loop = network_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - always called from a coroutine
        running = None
    if running is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def at_close(closer: Callable[[], Awaitable[None]]) -> None:
    """Run ``closer()`` on the network loop when the process exits (idempotent closers only)."""
    with _lock:
        _closers.append(closer)


def _shutdown() -> None:
    global _loop, _thread
    with _lock:
        loop, thread, closers = _loop, _thread, list(_closers)
        _loop, _thread = None, None
        _closers.clear()
    if loop is None or thread is None or not thread.is_alive():
        return

    async def close_all() -> None:
        for closer in closers:
            with contextlib.suppress(Exception):
                await closer()

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=2.0)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=2.0)
    if not thread.is_alive():
        loop.close()


def _forget_after_fork() -> None:
    """In a forked child the loop's thread is gone: start afresh on first use."""
    global _loop, _thread, _lock
    _lock = threading.Lock()
    _loop, _thread = None, None
    _closers.clear()


atexit.register(_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
