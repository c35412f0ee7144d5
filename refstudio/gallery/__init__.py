"""The static HTML gallery of a project: ``build_gallery(studio)`` → ``<project>/gallery/``.

>>> from refstudio import Studio
>>> from refstudio.gallery import build_gallery
>>> with Studio.open("my-project") as studio:               # doctest: +SKIP
...     report = build_gallery(studio)
>>> report.index                                            # doctest: +SKIP
PosixPath('.../my-project/gallery/index.html')
"""

from __future__ import annotations

from .build import GalleryReport, build_gallery

__all__ = ["GalleryReport", "build_gallery"]
