"""The gallery's download links: PNG copies of outputs that carry their own provenance.

Each output is written once as ``downloads/<generation>-<index>.png`` with the prompt, the
references (name + content hash), seed, parameters, provider, model and generation id in PNG
text chunks (:mod:`refstudio.library.provenance`); ``refstudio inspect FILE`` reads them back. The
stored originals in ``media/`` are never touched, and one that no longer matches its hash gets no
download. A rebuild only writes what is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..storage.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    from ..library.results import GenerationInfo


@dataclass
class DownloadResult:
    made: int = 0
    reused: int = 0
    #: (generation id, output index) -> file name inside ``downloads/``
    files: dict[tuple[int, int], str] = field(default_factory=dict)


def download_name(generation_id: int, index: int) -> str:
    return f"{generation_id}-{index}.png"


def ensure_downloads(gens: list[GenerationInfo], folder: Path) -> DownloadResult:
    """Write the provenance PNG of every output that does not have one yet."""
    from ..library.provenance import png_with_provenance, provenance_of

    folder.mkdir(parents=True, exist_ok=True)
    result = DownloadResult()
    for gen in gens:
        for output in gen.outputs:
            name = download_name(gen.id, output.index)
            target = folder / name
            if target.is_file():
                result.reused += 1
                result.files[(gen.id, output.index)] = name
                continue
            try:
                # Through the media store, checked: a damaged original is not handed out.
                data = output.data()
                png = png_with_provenance(data, provenance_of(gen, output))
            except Exception:  # a missing or unreadable original: no link, not a failed build
                continue
            atomic_write_bytes(target, png)
            result.made += 1
            result.files[(gen.id, output.index)] = name
    return result
