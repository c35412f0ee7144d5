"""``refstudio serve``: the library → compose → generate → compare → promote loop in a browser.

A Starlette app with server-rendered Jinja2 pages over :class:`refstudio.AsyncStudio`; its
routes are thin, as the CLI's commands are. See :mod:`.server` (app and uvicorn),
:mod:`.security` (who may connect, CSRF, headers) and :mod:`.jobs` (work that outlives a
browser tab). Layer: beside ``cli``, above ``app``.
"""

from __future__ import annotations

from .security import AccessPolicy
from .server import create_app, run_server

__all__ = ["AccessPolicy", "create_app", "run_server"]
