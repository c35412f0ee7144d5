"""Render each task's output shortly before the task completes, off the request path.

The real service has a task's image in storage by the time it reports ``completed``, and serves
it from a CDN; a download is a plain file transfer. Rendering the PNG inside the download handler
instead (about 45 ms of Pillow work per 720p image, most of it under the GIL) made downloads
queue behind each other whenever many tasks finished together, and that queue showed up in every
client's wall time as if it were the client's cost. One background thread renders each task a
little ahead of its completion time, earliest first, so downloads are answered from memory. A
download that arrives before its render (a zero-latency simulator, a backlog) still renders on
demand; the task's own lock keeps the two from rendering it twice.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

__all__ = ["PreRenderer"]


class PreRenderer:
    """A daemon thread running ``render(task_id)`` for each scheduled task at its start time."""

    #: Seconds before completion a render starts: enough for a render under load, short enough
    #: that the burst of submits at the start of a batch is not slowed by rendering.
    LEAD = 0.75

    def __init__(self, render: Callable[[str], object]) -> None:
        self._render = render
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()  # ties keep submit order; task ids never compare
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def schedule(self, task_id: str, completes_at: float) -> None:
        """Render ``task_id`` from ``completes_at - LEAD`` (epoch seconds) on."""
        with self._wake:
            heapq.heappush(self._heap, (completes_at - self.LEAD, next(self._order), task_id))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="simulator-prerender",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def stop(self) -> None:
        """Drop what is scheduled and end the thread (a render in progress finishes first).

        Scheduling again afterwards starts a new thread: a stopped simulator may be restarted.
        """
        with self._wake:
            self._stopped = True
            self._heap.clear()
            self._wake.notify()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        with self._wake:
            self._stopped = False

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopped:
                    if self._heap:
                        wait = self._heap[0][0] - time.time()
                        if wait <= 0:
                            break
                        self._wake.wait(wait)
                    else:
                        self._wake.wait()
                if self._stopped:
                    return
                _, _, task_id = heapq.heappop(self._heap)
            # A failed render is retried by the download that needs it, which reports it.
            try:
                self._render(task_id)
            except Exception:  # never let one task stop the thread
                continue
