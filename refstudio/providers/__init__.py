"""Providers: one module per image-generation service, all behind :class:`~.base.Provider`.

Kept free of imports on purpose: importing ``refstudio.providers`` must not pull in httpx or any
provider module; the registry loads them by entry point (``refstudio.providers`` group) on demand.
"""
