"""refstudio: consistent characters and locations with Runway Gen-4 Image.

The public API is re-exported here and imported lazily, so ``refstudio --help`` stays fast
(the CLI must not pay for SQLAlchemy, httpx or Pillow just to print help).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Studio": "refstudio.app.studio",
    "AsyncStudio": "refstudio.app.studio",
    "ReferenceInfo": "refstudio.library.references",
    "ImageInfo": "refstudio.library.references",
    "AddedImage": "refstudio.library.references",
    "PackExportResult": "refstudio.library.packs",
    "PackImportResult": "refstudio.library.packs",
    "read_provenance": "refstudio.library.provenance",
    "ModelSpec": "refstudio.models.spec",
    "RefstudioError": "refstudio.errors",
    "ProjectError": "refstudio.errors",
    "ProjectNotFoundError": "refstudio.errors",
    "ProjectExistsError": "refstudio.errors",
    "ConfigError": "refstudio.errors",
    "InputError": "refstudio.errors",
    "InvalidNameError": "refstudio.errors",
    "NameTakenError": "refstudio.errors",
    "ParameterError": "refstudio.errors",
    "ImageError": "refstudio.errors",
    "NotFoundError": "refstudio.errors",
    "ReferenceNotFoundError": "refstudio.errors",
    "ImageNotFoundError": "refstudio.errors",
    "GenerationNotFoundError": "refstudio.errors",
    "OutputNotFoundError": "refstudio.errors",
    "PromptError": "refstudio.errors",
    "MentionError": "refstudio.errors",
    "TooManyReferencesError": "refstudio.errors",
    "TooFewReferencesError": "refstudio.errors",
    "UnknownModelError": "refstudio.errors",
    "TemplateError": "refstudio.errors",
    "BudgetExceededError": "refstudio.errors",
    "ProviderError": "refstudio.errors",
    "AuthenticationError": "refstudio.errors",
    "NotAcceptedError": "refstudio.errors",
    "LimitReachedError": "refstudio.errors",
    "AmbiguousSubmitError": "refstudio.errors",
    "RequestRejectedError": "refstudio.errors",
    "TransientError": "refstudio.errors",
    "ProtocolError": "refstudio.errors",
    "GenerationError": "refstudio.errors",
    "GenerationFailedError": "refstudio.errors",
    "WorkflowError": "refstudio.errors",
    "StorageError": "refstudio.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:
    from .app.studio import AsyncStudio as AsyncStudio
    from .app.studio import Studio as Studio
    from .errors import *  # noqa: F403
    from .library.packs import PackExportResult as PackExportResult
    from .library.packs import PackImportResult as PackImportResult
    from .library.provenance import read_provenance as read_provenance
    from .library.references import AddedImage as AddedImage
    from .library.references import ImageInfo as ImageInfo
    from .library.references import ReferenceInfo as ReferenceInfo
    from .models.spec import ModelSpec as ModelSpec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'refstudio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
