"""A local stand-in for WaveSpeedAI's ``runwayml/gen4-image`` API, with latency and faults, and
for Runway's own API beside it (``/v1/...``: :mod:`refstudio.simulator.runway`).

It speaks the protocol in ``shared/protocol/wavespeed.md`` (submit, poll, both upload flows,
sync mode, the envelope) strictly enough to catch malformed requests, and injects the failures a
careful client must survive: 429 with Retry-After, 5xx before and after a task is created,
dropped connections, failed tasks and a per-minute account limit. Outputs are deterministic
preview images (:mod:`refstudio.providers.offline.previews`) at the model's exact pixel sizes.

``GET /_sim/stats`` (or :meth:`Simulator.stats`) tells how a client behaved: how many submits
were accepted, ambiguous or dropped, and per task how long after completion the client noticed.
"""

from __future__ import annotations

from refstudio.simulator.server import Simulator, run_forever
from refstudio.simulator.state import SimulatorConfig

__all__ = ["Simulator", "SimulatorConfig", "run_forever"]
