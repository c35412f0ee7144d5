"""Runway's own API, spoken by the simulator beside WaveSpeed's (``/v1/...`` does not clash
with ``/api/v3/...``): text-to-image creates with tagged references, tasks that queue as
THROTTLED at the organisation's concurrency, failure codes, cancels, the ``runway://`` upload
flow and the organisation's credits and daily limits. Facts: ``shared/protocol/runway.md``.
"""

from __future__ import annotations

from refstudio.simulator.runway.book import RunwayBook
from refstudio.simulator.runway.routes import RunwayRoutes

__all__ = ["RunwayBook", "RunwayRoutes"]
