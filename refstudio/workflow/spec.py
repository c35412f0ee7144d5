"""Workflow files: TOML parsed into typed models that refuse unknown keys, naming file and key.

```toml
[vars]
hero = "mara"

[refs.mara]                      # references the workflow needs, made from files if missing
images = ["../sources/mara.png"]
kind = "character"

[[step]]
id = "coat"
prompt = "@{{ hero }}'s red coat alone on a mannequin, studio light"
aspect_ratio = "3:4"
resolution = "720p"
seed = 11
variants = 2                     # seeds S, S+1
promote = { name = "mara_coat", kind = "object", pick = "first" }   # or an index, or "manual"

[[step]]
id = "scene"
prompt = "@mara wearing @mara_coat in @tavern"    # runs after "coat": it promotes mara_coat
after = []                                          # explicit extra ordering

[[step]]
id = "try"
prompt = "@mara reading in @tavern"
models = ["gen4", "nano-banana"]   # one generation per model and variant (or model = "...")
```
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import WorkflowError
from ..models.params import MAX_BATCH
from ..storage.fsutil import UnreadableFileError, read_regular_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
#: Largest workflow file read; real ones are a few KB.
MAX_WORKFLOW_BYTES = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromoteSpec(_Strict):
    """Which output of a step becomes which reference."""

    name: str
    kind: str | None = None
    pick: Literal["first", "manual"] | int = "first"
    label: str | None = None
    keep_primary: bool = False
    description: str | None = None

    @field_validator("pick")
    @classmethod
    def _non_negative(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 0:
            raise ValueError("pick index must be 0 or more")
        return value


class RefSpec(_Strict):
    """A reference the workflow needs; created from ``images`` when the library lacks it."""

    images: list[str] = Field(min_length=1)
    kind: str = "character"
    description: str = ""
    tags: list[str] = []


class StepSpec(_Strict):
    id: str = Field(pattern=STEP_ID_PATTERN)
    prompt: str | None = None
    template: str | None = None
    vars: dict[str, Any] = {}
    aspect_ratio: str | None = None
    resolution: str | None = None
    seed: int | None = None
    variants: int = Field(default=1, ge=1, le=MAX_BATCH)
    after: list[str] = []
    promote: PromoteSpec | None = None
    provider: str | None = None
    #: One model (id or alias) or several: one generation per model and variant; ``promote``
    #: picks among all of them. Neither: the project's default model.
    model: str | None = None
    models: list[str] | None = Field(default=None, min_length=1)
    #: The chosen model's own options (``refstudio models show``), e.g. {guidance_scale = 5}.
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_model_key(self) -> StepSpec:
        if self.model is not None and self.models is not None:
            raise ValueError("give model or models, not both")
        return self

    @property
    def model_names(self) -> list[str | None]:
        """The models asked for, in order (None: the project's default)."""
        if self.models is not None:
            return list(dict.fromkeys(self.models))
        return [self.model]


class WorkflowSpec(_Strict):
    vars: dict[str, Any] = {}
    refs: dict[str, RefSpec] = {}
    step: list[StepSpec] = Field(min_length=1)


class Workflow:
    """A parsed workflow file: its spec, where it lives, and a hash of its text."""

    def __init__(self, path: Path, spec: WorkflowSpec, text: str) -> None:
        self.path = path
        self.spec = spec
        self.text_hash = hashlib.sha256(text.encode()).hexdigest()

    @property
    def steps(self) -> list[StepSpec]:
        return self.spec.step

    def resolve_path(self, relative: str) -> Path:
        """A path written in the workflow, relative to the workflow file's folder."""
        return (self.path.parent / relative).resolve()

    def check_image_paths(self, project_root: Path, *, allow_outside: bool = False) -> None:
        """Refuse ``[refs]`` images outside ``project_root`` unless ``allow_outside``.

        A workflow file may come from someone else: without this it could make the library
        read (and a later upload send) any file on the disk. Paths are compared after
        resolving symlinks and ``..``.
        """
        if allow_outside:
            return
        root = project_root.resolve()
        for name, ref in self.spec.refs.items():
            for i, written in enumerate(ref.images):
                resolved = self.resolve_path(written)
                if resolved != root and root not in resolved.parents:
                    raise WorkflowError(
                        f"{self.path}: refs.{name}.images[{i}]: {written!r} is {resolved}, "
                        f"outside the project folder {root}",
                        hint="copy the image into the project (e.g. sources/), or pass "
                        "--allow-outside (allow_outside=True in Python) to read it from there",
                    )


def load_workflow(path: Path | str) -> Workflow:
    """Read and check a workflow file. Raises WorkflowError naming the file and the key."""
    path = Path(path)
    try:
        text = read_regular_text(path, limit=MAX_WORKFLOW_BYTES)
    except UnreadableFileError as exc:
        if exc.reason == "no such file":
            raise WorkflowError(f"no workflow file {path}") from None
        raise WorkflowError(f"cannot read the workflow {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkflowError(f"{path}: {exc}") from None
    except RecursionError:  # tomllib recurses: a value thousands of levels deep
        raise WorkflowError(f"{path}: a value is nested too deeply") from None
    try:
        spec = WorkflowSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _location(raw, first["loc"])
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        raise WorkflowError(f"{path}: {where}: {message}") from None
    _check_steps(path, spec)
    return Workflow(path.resolve(), spec, text)


def _location(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """``step[2] (id "scene").promote.pick`` rather than pydantic's tuple."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            try:
                node = node[item]
                if isinstance(node, dict) and "id" in node:
                    label += f' (id "{node["id"]}")'
            except (IndexError, KeyError, TypeError):
                node = None
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _check_steps(path: Path, spec: WorkflowSpec) -> None:
    seen: set[str] = set()
    for step in spec.step:
        if step.id in seen:
            raise WorkflowError(f'{path}: step id "{step.id}" is used twice')
        seen.add(step.id)
        if (step.prompt is None) == (step.template is None):
            raise WorkflowError(f'{path}: step "{step.id}": give exactly one of prompt, template')
    for step in spec.step:
        for other in step.after:
            if other not in seen:
                raise WorkflowError(f'{path}: step "{step.id}": after names unknown step "{other}"')
