"""Jinja2 prompt templates: sandboxed, strict, and errors that name the file and line.

Templates live as ``*.j2`` files in a project's ``templates/`` folder and may ``include``/
``import`` each other; inline prompts (a workflow step's ``prompt``) are rendered the same way.

Decisions:

* Environment: :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (templates may be shared
  between people, so they must not reach Python internals or mutate values), ``StrictUndefined``
  (a missing variable is an error, never an empty string), no autoescaping (prompts are not
  HTML).
* Limits (:mod:`refstudio.prompts.sandbox`): a render is bounded in output, in the size of
  every value it builds, in steps and nesting, and in time, so a hostile template fails fast with
  a TemplateError instead of eating the machine. The output is streamed and counted as it comes.
* Output: a prompt is one paragraph, so every run of whitespace (newlines, indentation) becomes
  one space and the ends are stripped. Authors can lay templates out freely; pass
  ``collapse_whitespace=False`` to keep the layout (only the ends are stripped then).
* ``refs``: templates read reference data through ``refs`` (``{{ refs.mara.description }}``,
  ``{{ refs.mara.tags|join(', ') }}``), matched case-insensitively. Each entry is a read-only
  :class:`RefView` (name, kind, description, tags, labels). ``refs`` may be a mapping of
  :class:`~refstudio.prompts.resolve.RefRecord` or a
  :class:`~refstudio.prompts.resolve.ReferenceLookup`, which is asked lazily, one name at a time.
  ``refs`` is a reserved variable name when reference data is passed.
* Errors all become :class:`~refstudio.errors.TemplateError` with ``source`` (the template name,
  relative to ``templates/``) and ``line``: syntax errors, undefined variables, sandbox
  violations, missing templates (listing the available ones), includes that leave
  ``templates/`` (``../secret``, or a symlink pointing out), and any other runtime error.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import jinja2
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.loaders import split_template_path

from ..errors import ParameterError, TemplateError
from ..storage.fsutil import UnreadableFileError, read_regular_text
from .names import suggest
from .resolve import ReferenceLookup, RefRecord
from .sandbox import DEFAULT_LIMITS, LimitExceeded, PromptEnvironment, TemplateLimits, render_budget

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "TEMPLATE_SUFFIX",
    "RefView",
    "TemplateLimits",
    "load_vars_file",
    "parse_var_assignments",
    "render_string",
    "render_template",
]

TEMPLATE_SUFFIX = ".j2"
#: Largest variables file read (real ones are a few KB); templates are capped by the sandbox.
MAX_VARS_BYTES = 4_000_000
#: Deepest nesting of lists/tables in a variable's value (``--var k:=…`` or a variables file).
#: Real values are a few levels deep; the parsers and templates recurse, so a value thousands
#: of levels deep would end in RecursionError (a traceback) rather than a clear error.
MAX_VAR_DEPTH = 64

_WHITESPACE = re.compile(r"\s+")
_MAX_MESSAGE = 300
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- reference data


@dataclass(frozen=True)
class RefView:
    """What a template sees of one reference: plain, read-only data."""

    name: str
    kind: str
    description: str
    tags: tuple[str, ...]
    labels: tuple[str, ...]

    @classmethod
    def of(cls, record: RefRecord) -> RefView:
        """The view of a library record."""
        labels = tuple(i.label for i in record.images if i.label)
        return cls(record.name, record.kind, record.description, tuple(record.tags), labels)

    def __str__(self) -> str:
        # "{{ refs.mara }}" writes the mention, the most useful thing in a prompt.
        return "@" + self.name


class _MissingRef(jinja2.StrictUndefined):
    """Undefined ``refs.<name>``; the did-you-mean is built only if the error is shown.

    Lazy because ``{% if refs.x is defined %}`` must stay cheap in a 100,000-reference library.
    """

    __slots__ = ("_candidates",)

    def __init__(self, name: str, candidates: Callable[[], Iterable[str]]) -> None:
        super().__init__(name=name)
        self._candidates = candidates

    @property
    def _undefined_message(self) -> str:
        close = suggest(self._undefined_name or "", self._candidates())
        message = f"no reference named {self._undefined_name!r} in refs"
        return message + (f"; did you mean {', '.join(close)}?" if close else "")


class _Refs:
    """The ``refs`` template variable: case-insensitive, read-only, attribute or item access.

    It deliberately has no public methods: a reference may well be called ``items`` or ``keys``,
    and the sandbox's attribute-first lookup would find a method of that name before the entry.
    """

    __slots__ = ("_cache", "_lookup", "_records")

    def __init__(self, refs: Mapping[str, RefRecord] | ReferenceLookup) -> None:
        self._cache: dict[str, RefView | None] = {}
        if isinstance(refs, Mapping):
            self._records: dict[str, RefRecord] | None = {k.lower(): v for k, v in refs.items()}
            self._lookup: ReferenceLookup | None = None
        else:
            self._records = None
            self._lookup = refs

    def _names(self) -> Iterable[str]:
        if self._records is not None:
            return [r.name for r in self._records.values()]
        assert self._lookup is not None
        return self._lookup.all_names()

    def __getitem__(self, name: str) -> RefView | _MissingRef:
        key = str(name).lower()
        if key not in self._cache:
            if self._records is not None:
                record = self._records.get(key)
            else:
                assert self._lookup is not None
                record = self._lookup.find(str(name))
            self._cache[key] = RefView.of(record) if record is not None else None
        view = self._cache[key]
        return view if view is not None else _MissingRef(str(name), self._names)

    def __getattr__(self, name: str) -> RefView | _MissingRef:
        if name.startswith("_"):  # never shadow Python internals (pickling, copy, ...)
            raise AttributeError(name)
        return self[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and not isinstance(self[name], jinja2.Undefined)

    def __iter__(self) -> Iterator[str]:
        # Iterating is only possible over a mapping; a library lookup is not listed wholesale.
        return iter([r.name for r in self._records.values()] if self._records is not None else [])


# --------------------------------------------------------------------------- environment


class _OutsideTemplates(TemplateNotFound):
    """A template name that resolves outside the templates folder."""


class _UnreadableTemplate(TemplateNotFound):
    """A template file that is not a regular file, is too large, or cannot be read."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, reason)
        self.reason = reason


class _ConfinedLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader that refuses files whose real path leaves the templates folder.

    ``FileSystemLoader`` already rejects ``..`` segments; this also stops symlinks pointing out.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(str(root), followlinks=False)
        self._root = root

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        # FileSystemLoader's own lookup, but confined before anything is read, and read with a
        # bound: a template that is (or links to) a FIFO, a device or a huge file is refused.
        filename = os.path.join(str(self._root), *split_template_path(template))
        if not Path(os.path.realpath(filename)).is_relative_to(self._root):
            raise _OutsideTemplates(template)
        try:
            source = read_regular_text(filename, limit=DEFAULT_LIMITS.max_source)
        except UnreadableFileError as exc:
            if exc.reason == "no such file":
                raise TemplateNotFound(template) from None
            if exc.too_large:
                limit = DEFAULT_LIMITS.max_source
                raise LimitExceeded(f"template {template!r} is larger than {limit} bytes") from None
            raise _UnreadableTemplate(template, exc.reason) from None
        mtime = os.path.getmtime(filename)

        def uptodate() -> bool:
            try:
                return os.path.getmtime(filename) == mtime
            except OSError:
                return False

        return source, os.path.normpath(filename), uptodate


def _make_environment(loader: jinja2.BaseLoader) -> PromptEnvironment:
    return PromptEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


@lru_cache(maxsize=32)
def _environment(root: str | None) -> PromptEnvironment:
    # One environment per templates folder, so compiled templates are cached across renders;
    # FileSystemLoader checks mtimes, so edited files are still picked up.
    loader = _ConfinedLoader(Path(root)) if root is not None else jinja2.DictLoader({})
    return _make_environment(loader)


@lru_cache(maxsize=256)
def _compile_inline(root: str | None, source: str, name: str) -> jinja2.Template:
    env = _environment(root)
    code = env.compile(source, name=name, filename=name)
    return env.template_class.from_code(env, code, env.make_globals(None))


def _root_of(templates_dir: str | os.PathLike[str] | None) -> str | None:
    return None if templates_dir is None else os.path.realpath(templates_dir)


def _available(root: str | None) -> list[str]:
    if root is None or not os.path.isdir(root):
        return []
    return _environment(root).list_templates(extensions=[TEMPLATE_SUFFIX.lstrip(".")])


# --------------------------------------------------------------------------- errors


def _display_name(filename: str | None, root: str | None, fallback: str) -> str:
    if not filename:
        return fallback
    if root is not None and os.path.isabs(filename):
        try:
            return Path(filename).relative_to(root).as_posix()
        except ValueError:
            pass
    return filename


def _template_location(tb: TracebackType | None) -> tuple[str | None, int | None]:
    """The innermost template frame of a traceback: (filename, line).

    Jinja rewrites tracebacks of render errors so each template frame is a fake frame compiled
    with the template's filename and line, whose globals hold ``__jinja_exception__``.
    """
    found: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _template_error(exc: BaseException, root: str | None, name: str) -> TemplateError:
    if isinstance(exc, TemplateSyntaxError):
        filename: str | None = exc.filename or exc.name
        line: int | None = exc.lineno
        what = f"syntax error: {exc.message}"
    else:
        filename, line = _template_location(exc.__traceback__)
        if isinstance(exc, _UnreadableTemplate):
            what = f"template {exc.name!r} {exc.reason}"
        elif isinstance(exc, TemplateNotFound):
            available = _available(root)
            listing = ", ".join(available) if available else "none"
            outside = isinstance(exc, _OutsideTemplates) or ".." in str(exc.name).split("/")
            problem = "is outside templates/" if outside else "not found"
            what = f"template {exc.name!r} {problem} (available templates: {listing})"
        elif isinstance(exc, UndefinedError):
            what = f"undefined: {exc.message}"
        elif isinstance(exc, LimitExceeded):
            what = f"over a template limit: {exc}"
        elif isinstance(exc, SecurityError):
            what = f"not allowed in a template: {exc}"
        elif isinstance(exc, MemoryError):  # a last resort: the limits should come first
            what = "the template needs more memory than there is"
        else:
            what = f"{type(exc).__name__}: {exc}"
    what = " ".join(what.split())  # one line, whatever the exception said
    if len(what) > _MAX_MESSAGE:  # an exception may quote a whole (huge) value
        what = what[: _MAX_MESSAGE - 1] + "…"
    shown = _display_name(filename, root, name)
    where = f"{shown}:{line}" if line is not None else shown
    return TemplateError(f"{where}: {what}", source=shown, line=line)


# --------------------------------------------------------------------------- rendering


def _finish(output: str, collapse_whitespace: bool) -> str:
    return _WHITESPACE.sub(" ", output).strip() if collapse_whitespace else output.strip()


def _context(
    variables: Mapping[str, Any], refs: Mapping[str, RefRecord] | ReferenceLookup | None
) -> dict[str, Any]:
    context = dict(variables)
    if refs is not None:
        if "refs" in context:
            raise ParameterError(
                "'refs' is a reserved template variable (it holds reference data); rename yours"
            )
        context["refs"] = _Refs(refs)
    return context


def _render(
    load: Callable[[], jinja2.Template],
    root: str | None,
    name: str,
    variables: Mapping[str, Any],
    refs: Mapping[str, RefRecord] | ReferenceLookup | None,
    collapse_whitespace: bool,
    limits: TemplateLimits,
) -> str:
    context = _context(variables, refs)
    try:
        with render_budget(limits) as budget:
            output = _stream(load(), context, limits, budget.check_time)
    except Exception as exc:
        # Template code is user code: whatever it raises is the author's error to fix.
        raise _template_error(exc, root, name) from exc
    return _finish(output, collapse_whitespace)


def _stream(
    template: jinja2.Template,
    context: dict[str, Any],
    limits: TemplateLimits,
    check_time: Callable[[], None],
) -> str:
    """Render chunk by chunk, stopping as soon as the output or the time is over its limit."""
    chunks: list[str] = []
    size = 0
    stream = cast(Generator[str, None, None], template.generate(context))
    try:
        for chunk in stream:
            size += len(chunk)
            if size > limits.max_output:
                raise LimitExceeded(f"the prompt is longer than {limits.max_output} characters")
            check_time()
            chunks.append(chunk)
    finally:
        stream.close()
    return "".join(chunks)


def render_string(
    source: str,
    variables: Mapping[str, Any],
    refs: Mapping[str, RefRecord] | ReferenceLookup | None = None,
    name: str = "<prompt>",
    *,
    templates_dir: str | os.PathLike[str] | None = None,
    collapse_whitespace: bool = True,
    limits: TemplateLimits = DEFAULT_LIMITS,
) -> str:
    """Render an inline template ``source`` and return the prompt text.

    ``name`` is what errors call it; ``templates_dir`` (optional) lets it ``include``/``import``
    project templates; ``limits`` bounds the time, memory and output of the render. Raises
    :class:`~refstudio.errors.TemplateError` (with ``source`` and ``line``) for any template
    problem, including going over a limit, :class:`~refstudio.errors.ParameterError` when a
    variable is called ``refs`` while reference data is passed.
    """
    root = _root_of(templates_dir)
    if len(source) > limits.max_source:
        raise TemplateError(
            f"{name}: over a template limit: the template is longer than "
            f"{limits.max_source} characters",
            source=name,
        )
    return _render(
        lambda: _compile_inline(root, source, name),
        root,
        name,
        variables,
        refs,
        collapse_whitespace,
        limits,
    )


def render_template(
    templates_dir: str | os.PathLike[str],
    template_name: str,
    variables: Mapping[str, Any],
    refs: Mapping[str, RefRecord] | ReferenceLookup | None = None,
    *,
    collapse_whitespace: bool = True,
    limits: TemplateLimits = DEFAULT_LIMITS,
) -> str:
    """Render ``templates_dir/template_name`` (``.j2`` added when missing) to prompt text.

    Raises :class:`~refstudio.errors.TemplateError` naming the file and line; a missing template
    lists the available ones. ``limits`` as for :func:`render_string`.
    """
    root = _root_of(templates_dir)
    name = template_name
    if not name.endswith(TEMPLATE_SUFFIX):
        name += TEMPLATE_SUFFIX
    return _render(
        lambda: _environment(root).get_template(name),
        root,
        name,
        variables,
        refs,
        collapse_whitespace,
        limits,
    )


# --------------------------------------------------------------------------- variables


def load_vars_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read template variables from a ``.toml`` or ``.json`` file holding one table/object.

    Raises :class:`~refstudio.errors.ParameterError` for a missing file, an unknown suffix, a
    parse error (with its line) or a top level that is not a table.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ParameterError(f"variables file {p}: expected a .toml or .json file")
    try:
        text = read_regular_text(p, limit=MAX_VARS_BYTES)
    except UnreadableFileError as exc:
        if exc.reason.startswith("is not UTF-8"):
            raise ParameterError(f"variables file {p}: not UTF-8 text") from exc
        raise ParameterError(f"variables file {p}: cannot read it ({exc.reason})") from exc
    try:
        data: Any = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except RecursionError:
        raise _too_deep(f"variables file {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"variables file {p}: invalid TOML: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ParameterError(
            f"variables file {p}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(data, dict):
        raise ParameterError(
            f"variables file {p}: the top level must be an object of name -> value, "
            f"not {type(data).__name__}"
        )
    for key in data:
        _check_var_name(key, f"variables file {p}")
    _check_depth(data, f"variables file {p}")
    return data


def _too_deep(where: str) -> ParameterError:
    return ParameterError(f"{where}: the value is nested more than {MAX_VAR_DEPTH} levels deep",
                          hint="flatten it; template variables are meant to be small")


def _check_depth(value: Any, where: str) -> None:
    """Refuse lists/tables nested deeper than :data:`MAX_VAR_DEPTH` (checked without recursing)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_VAR_DEPTH:
                raise _too_deep(where)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _check_var_name(key: str, where: str) -> None:
    if not _VAR_NAME.fullmatch(key):
        raise ParameterError(
            f"{where}: {key!r} is not a valid variable name "
            "(letters, digits and '_', not starting with a digit)"
        )


def parse_var_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """Parse ``["key=value", "n:=3", ...]`` (e.g. repeated ``--var`` options) into a dict.

    ``key=value`` gives the string ``value`` as is (it may contain ``=``); ``key:=json`` parses
    the value as JSON, for numbers, booleans and lists (``night:=true``), because the string
    ``"false"`` is truthy in a template. A key given twice is an error, as it is most likely a
    mistake. Raises :class:`~refstudio.errors.ParameterError` naming the bad assignment.
    """
    result: dict[str, Any] = {}
    for item in assignments:
        key, eq, value = item.partition("=")
        if not eq:
            raise ParameterError(
                f"variable assignment {item!r}: expected key=value (or key:=json)",
                hint="for example: hero=mara, or count:=3",
            )
        as_json = key.endswith(":")
        key = key[:-1] if as_json else key
        key = key.strip()
        _check_var_name(key, f"variable assignment {item!r}")
        if key in result:
            raise ParameterError(f"variable {key!r} is given twice")
        if as_json:
            try:
                result[key] = json.loads(value)
            except RecursionError:
                raise _too_deep(f"variable assignment {key}:=") from None
            except json.JSONDecodeError as exc:
                raise ParameterError(
                    f"variable assignment {item!r}: the value after ':=' is not JSON ({exc.msg})",
                    hint='quote strings: name:=\'"mara"\', or use name=mara',
                ) from exc
            _check_depth(result[key], f"variable assignment {key}:=")
        else:
            result[key] = value
    return result
