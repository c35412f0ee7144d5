"""The template sandbox: what a prompt template may reach, and how much it may do.

Templates may come from other people (packs, shared workflows), so rendering one must be safe
against a hostile author: no Python internals, no mutation, and bounded time and memory. Jinja's
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` covers the first two; this module adds the
bounds, :class:`TemplateLimits`, enforced for one render at a time:

* **Every value a template builds is bounded** (``max_value`` characters or items, counted
  recursively, see :func:`measure`). Checked *before* the operations that can make something
  much larger than their inputs in one step (``*``, ``**``, ``%`` and ``format`` widths,
  ``center``/``ljust``/``zfill``/``expandtabs``, ``replace``, ``join``, ``|indent``,
  ``|wordwrap``, ``|batch``, ``|slice``, ``range``, ``lipsum``) and *after* every call, filter,
  operator, literal, ``~`` and captured block, so growth by repetition is caught early. Because
  each step is bounded, so is the memory of the next one.
* **The work is bounded**: loop iterations, calls, filters and includes count as steps
  (``max_steps``), macros nest at most ``max_depth`` deep, and the wall clock is checked every
  few steps and between output chunks (``seconds``).
* **The output is bounded** (``max_output``), counted while the template streams.
* ``range`` and ``lipsum`` are capped; ``str.translate``/``maketrans`` and ``int.to_bytes`` are
  not reachable (their size cannot be checked cheaply, and prompts do not need them).

Loops and ``~`` are hooked through a :class:`~jinja2.compiler.CodeGenerator` subclass (the
documented ``code_generator_class`` hook): the iterable of every ``{% for %}`` is wrapped in a
counting iterator, and ``a ~ b`` and list/tuple/dict literals go through a size check.

Every refusal raises :class:`LimitExceeded` (a :class:`~jinja2.sandbox.SecurityError`), which
``templates.py`` turns into a one-line :class:`~refstudio.errors.TemplateError`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
import time
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sized,
    ValuesView,
)
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext, Macro, markup_join
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import Markup

__all__ = ["LimitExceeded", "PromptEnvironment", "TemplateLimits", "measure", "render_budget"]


@dataclass(frozen=True)
class TemplateLimits:
    """How much one render may do; a template that needs more fails with ``TemplateError``.

    The defaults are far above what a prompt needs (a Gen-4 prompt is at most 1,000 characters)
    and far below what would hurt the machine.
    """

    #: characters of rendered text, before whitespace is collapsed
    max_output: int = 65_536
    #: size of any one value the template builds: characters of a string, items of a list
    #: (counted recursively), about one per decimal digit of an integer
    max_value: int = 100_000
    #: items of one ``range()``
    max_range: int = 10_000
    #: loop iterations, calls, filters and includes, all together
    max_steps: int = 200_000
    #: nested macro calls (and calls of ``loop()`` in a recursive loop)
    max_depth: int = 64
    #: wall-clock seconds for one render
    seconds: float = 2.0
    #: characters of one template's source
    max_source: int = 262_144
    #: words ``lipsum()`` may produce
    max_lipsum_words: int = 5_000


DEFAULT_LIMITS = TemplateLimits()


class LimitExceeded(SecurityError):
    """A template went over one of its :class:`TemplateLimits`."""


# --------------------------------------------------------------------------- the budget


class _Budget:
    """What one render has used so far."""

    __slots__ = ("deadline", "depth", "limits", "steps")

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.steps = 0
        self.depth = 0
        self.deadline = time.monotonic() + limits.seconds

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise LimitExceeded(
                f"the template did more than {self.limits.max_steps} steps "
                "(loop iterations, calls, filters and includes)"
            )
        if self.steps & 31 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"the template ran for more than {self.limits.seconds:g} s")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "refstudio_template_budget", default=None
)


class render_budget:  # used like a function: ``with render_budget(limits) as budget``
    """Context manager: the budget of one render, seen by every hook while it is active."""

    def __init__(self, limits: TemplateLimits) -> None:
        self._budget = _Budget(limits)
        self._token: contextvars.Token[_Budget | None] | None = None

    def __enter__(self) -> _Budget:
        self._token = _BUDGET.set(self._budget)
        return self._budget

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _BUDGET.reset(self._token)


def _limits() -> TemplateLimits:
    budget = _BUDGET.get()
    return budget.limits if budget is not None else DEFAULT_LIMITS


def _step() -> TemplateLimits:
    """Count one step of the current render (if any) and return its limits."""
    budget = _BUDGET.get()
    if budget is None:  # compile-time constant folding, outside a render
        return DEFAULT_LIMITS
    budget.step()
    return budget.limits


# --------------------------------------------------------------------------- sizes

_CONTAINERS = (list, tuple, set, frozenset, KeysView, ValuesView)
_SMALL = frozenset({bool, float})


def measure(value: Any, limit: int) -> int:
    """The size of ``value``: characters, items (recursively), about one per integer digit.

    Stops counting as soon as the size passes ``limit`` (so it costs at most ``limit`` steps,
    even for a structure that shares one big list a million times) and returns a number above
    ``limit`` then. Objects it does not know count as 1.
    """
    if isinstance(value, str):  # the common case, first
        return len(value)
    total = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 1
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, range):
            total += _range_len(item)
        elif isinstance(item, (dict, ItemsView)):
            pairs = item.items() if isinstance(item, Mapping) else item
            total += 1
            for pair in pairs:
                total += 1
                stack.extend(pair)
                if total > limit:
                    return total
        elif isinstance(item, _CONTAINERS):
            total += 1
            for child in item:
                total += 1
                stack.append(child)
                if total > limit:
                    return total
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        else:
            total += 1
        if total > limit:
            return total
    return total


def _range_len(r: range) -> int:
    try:
        return len(r)
    except OverflowError:  # longer than sys.maxsize
        return 2**63


def _check_value(value: Any, limits: TemplateLimits, what: str = "a value") -> Any:
    if value is None or type(value) in _SMALL:
        return value
    if measure(value, limits.max_value) > limits.max_value:
        raise LimitExceeded(f"{what} larger than {limits.max_value} characters or items")
    return value


def _check_size(size: int, limits: TemplateLimits, what: str) -> None:
    if size > limits.max_value:
        raise LimitExceeded(f"{what} would be larger than {limits.max_value} characters or items")


def _check_width(width: Any, limits: TemplateLimits, what: str) -> None:
    if isinstance(width, int) and width > limits.max_value:
        raise LimitExceeded(f"{what} of {width} is larger than {limits.max_value}")


class _Guarded:
    """An iterator that counts a step per item; ``sized`` also bounds the items' total size.

    Wraps the iterable of every ``{% for %}`` (``sized=False``: the iterable itself is already
    bounded) and every iterator a filter or call returns (``sized=True``: ``|map``, ``|batch``,
    ``|reverse``...), so whatever consumes it, a loop or ``|list``, stays within the limits.
    """

    __slots__ = ("_iterable", "_iterator", "_size", "_sized")

    def __init__(self, iterable: Iterable[Any], sized: bool) -> None:
        self._iterable = iterable
        self._iterator = iter(iterable)
        self._sized = sized
        self._size = 0

    def __iter__(self) -> _Guarded:
        return self

    def __next__(self) -> Any:
        limits = _step()
        item = next(self._iterator)
        if self._sized:
            self._size += 1 + measure(item, limits.max_value)
            _check_size(self._size, limits, "a sequence")
        return item


class _LoopGuard(_Guarded):
    """The iterable of a ``{% for %}``: a step per iteration, and the length when there is one."""

    __slots__ = ()

    def __init__(self, iterable: Iterable[Any]) -> None:
        super().__init__(iterable, sized=False)

    def __len__(self) -> int:
        # LoopContext asks for len() to offer loop.length without consuming the iterable.
        if isinstance(self._iterable, Sized):
            return len(self._iterable)
        raise TypeError(f"object of type {type(self._iterable).__name__!r} has no len()")


def _checked_result(value: Any, limits: TemplateLimits) -> Any:
    if isinstance(value, str):
        return _check_value(value, limits)
    if isinstance(value, Iterator) and not isinstance(value, (_Guarded, _LoopGuard)):
        return _Guarded(value, sized=True)
    return _check_value(value, limits)


def _materialize(value: Any, limits: TemplateLimits) -> Any:
    """``value`` as a sized collection (a list if it was an iterator), within the limits."""
    if isinstance(value, Sized) and not isinstance(value, _Guarded):
        return value
    return list(value if isinstance(value, _Guarded) and value._sized else _Guarded(value, True))


def _joined_size(parts: Any, sep: Any, limits: TemplateLimits) -> int:
    count = len(parts)
    return measure(parts, limits.max_value) + max(count - 1, 0) * measure(sep, limits.max_value)


# --------------------------------------------------------------------------- format widths

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_DIGITS = re.compile(r"\d+")


def _check_number_text(text: str, limits: TemplateLimits, what: str) -> None:
    if len(text) > 9 or int(text) > limits.max_value:
        raise LimitExceeded(f"{what} of {text[:12]} is larger than {limits.max_value}")


def _check_percent_format(fmt: Any, values: Any, limits: TemplateLimits) -> None:
    """``fmt % values``: no width or precision above the limit, including ``*`` ones."""
    if not isinstance(fmt, (str, bytes)):
        return
    text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
    star = False
    for match in _PERCENT_SPEC.finditer(text):
        for part in match.groups():
            if part == "*":
                star = True
            elif part:
                _check_number_text(part, limits, "a format width or precision")
    if star:
        for value in values if isinstance(values, tuple) else (values,):
            _check_width(value, limits, "a '*' format width")


def _check_format_spec(spec: str, limits: TemplateLimits) -> None:
    # A standard format spec has numbers only for width and precision.
    for digits in _DIGITS.findall(spec):
        _check_number_text(digits, limits, "a format width or precision")


class _CheckedFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox, refusing widths like ``{:>999999999}``."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        _check_format_spec(format_spec, _limits())
        return super().format_field(value, format_spec)


class _CheckedEscapeFormatter(_CheckedFormatter, SandboxedEscapeFormatter):
    pass


# --------------------------------------------------------------------------- helpers


def _capped_range(*args: int) -> range:
    limits = _limits()
    rng = range(*args)
    size = _range_len(rng)
    if size > limits.max_range:
        raise LimitExceeded(f"range() of {size} items; at most {limits.max_range} are allowed")
    return rng


def _capped_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    limits = _limits()
    words = n * (min if min > max else max)
    if words > limits.max_lipsum_words:
        raise LimitExceeded(f"lipsum() of up to {words} words; at most {limits.max_lipsum_words}")
    return generate_lorem_ipsum(n, html, min, max)


def _str_method_check(owner: Any, name: str, args: tuple[Any, ...], limits: TemplateLimits) -> Any:
    """Checks before a str/bytes method that can build much more than it is given.

    Returns replacement arguments (for ``join``, whose iterable is read once here) or None.
    """
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _check_width(args[0], limits, f"{name}() width")
    elif name == "expandtabs":
        tabsize = args[0] if args else 8
        if isinstance(tabsize, int):
            tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
            _check_size(len(owner) + tabs * tabsize, limits, "expandtabs()")
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0 else None
        if isinstance(old, type(owner)) and isinstance(new, type(owner)):
            hits = owner.count(old) if old else len(owner) + 1
            if count is not None:
                hits = min(hits, count)
            _check_size(len(owner) + hits * len(new), limits, "replace()")
    elif name == "join" and args:
        parts = _materialize(args[0], limits)
        _check_size(_joined_size(parts, owner, limits), limits, "join()")
        return (parts, *args[1:])
    return None


#: Methods whose output size cannot be checked cheaply beforehand; prompts do not need them.
_BLOCKED_ATTRIBUTES = {
    "translate": (str, bytes, bytearray),
    "maketrans": (str, bytes, bytearray),
    "to_bytes": (int,),
}


# --------------------------------------------------------------------------- filters

_FilterCheck = Callable[[dict[str, Any], TemplateLimits], None]


def _check_indent(a: dict[str, Any], limits: TemplateLimits) -> None:
    s, width = a.get("s"), a.get("width", 4)
    if isinstance(width, int):
        _check_width(width, limits, "indent width")
        width_len = width
    else:
        width_len = len(str(width))
    if isinstance(s, str):
        _check_size(len(s) + (s.count("\n") + 1) * width_len, limits, "indent")


def _check_wordwrap(a: dict[str, Any], limits: TemplateLimits) -> None:
    s, width, wrap = a.get("s"), a.get("width", 79), a.get("wrapstring")
    if isinstance(s, str) and isinstance(width, int) and isinstance(wrap, str):
        lines = len(s) // max(width, 1) + s.count("\n") + 1
        _check_size(len(s) + lines * len(wrap), limits, "wordwrap")


def _check_replace(a: dict[str, Any], limits: TemplateLimits) -> None:
    s, old, new, count = a.get("s"), a.get("old"), a.get("new"), a.get("count")
    if all(isinstance(x, str) for x in (s, old, new)):
        assert isinstance(s, str) and isinstance(old, str) and isinstance(new, str)
        hits = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        _check_size(len(s) + hits * len(new), limits, "replace")


def _check_join(a: dict[str, Any], limits: TemplateLimits) -> None:
    a["value"] = parts = _materialize(a.get("value"), limits)
    _check_size(_joined_size(parts, a.get("d", ""), limits), limits, "join")


def _check_tojson(a: dict[str, Any], limits: TemplateLimits) -> None:
    if a.get("indent"):
        raise LimitExceeded("tojson with indent is not allowed in prompts (a prompt is one line)")


def _check_format(a: dict[str, Any], limits: TemplateLimits) -> None:
    _check_percent_format(a.get("value"), a.get("kwargs") or a.get("args"), limits)


def _check_sum(a: dict[str, Any], limits: TemplateLimits) -> None:
    # Summing lists copies the running total each time: count the steps while it happens.
    a["iterable"] = _Guarded(a["iterable"], sized=True)


_FILTER_CHECKS: dict[str, _FilterCheck] = {
    "center": lambda a, lim: _check_width(a.get("width", 80), lim, "center width"),
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "replace": _check_replace,
    "join": _check_join,
    "batch": lambda a, lim: _check_width(a.get("linecount"), lim, "batch size"),
    "slice": lambda a, lim: _check_width(a.get("slices"), lim, "slice count"),
    "tojson": _check_tojson,
    "format": _check_format,
    "sum": _check_sum,
}


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(func)  # of the plain function, for Jinja's async variants
    # An async variant whose plain function takes no context is still passed one: skip it.
    passed = getattr(func, "jinja_pass_arg", None) is not None
    skip = int(passed and getattr(inspect.unwrap(func), "jinja_pass_arg", None) is None)
    check = _FILTER_CHECKS.get(name)

    @functools.wraps(func)  # keeps jinja_pass_arg, so Jinja passes the same arguments
    def guarded(*args: Any, **kwargs: Any) -> Any:
        limits = _step()
        for value in (*args, *kwargs.values()):
            _check_value(value, limits, f"|{name} input")
        if check is not None:
            try:
                bound = signature.bind(*args[skip:], **kwargs)
            except TypeError:
                pass  # the filter itself reports its wrong arguments
            else:
                arguments = dict(bound.arguments)
                check(arguments, limits)
                bound.arguments.update(arguments)
                args, kwargs = (*args[:skip], *bound.args), bound.kwargs
        return _checked_result(func(*args, **kwargs), limits)

    return guarded


# --------------------------------------------------------------------------- code generation


class _CodeGenerator(CodeGenerator):
    """Routes loops, ``~`` and literals through the environment's checks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_iterables: dict[int, nodes.Node] = {}

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._loop_iterables[id(node.iter)] = node.iter  # held, so the id stays unique
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if self._loop_iterables.get(id(node)) is not node:
            return super().visit(node, *args, **kwargs)
        # The iterable of a {% for %}: every iteration counts as a step.
        self.write("environment.guarded_loop(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            markup = "context.eval_ctx.autoescape"
        else:
            markup = repr(bool(frame.eval_ctx.autoescape))
        self.write("environment.guarded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(f"), {markup})")

    def _checked_literal(self, visit: Callable[[], None]) -> None:
        self.write("environment.guarded_value(")
        visit()
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._checked_literal(lambda: super(_CodeGenerator, self).visit_List(node, frame))

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._checked_literal(lambda: super(_CodeGenerator, self).visit_Dict(node, frame))

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # an assignment target: `{% for a, b in ... %}`
            super().visit_Tuple(node, frame)
        else:
            self._checked_literal(lambda: super(_CodeGenerator, self).visit_Tuple(node, frame))


# --------------------------------------------------------------------------- environment


class PromptEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with the limits of the current :func:`render_budget`."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize, **options)
        self.globals["range"] = _capped_range
        self.globals["lipsum"] = _capped_lipsum
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    # -- what the compiled template calls

    def guarded_loop(self, iterable: Any) -> Any:
        if isinstance(iterable, jinja2.Undefined):
            return iterable  # iterating it raises the usual "undefined" error
        return _LoopGuard(iterable)

    def guarded_concat(self, parts: tuple[Any, ...], markup: bool) -> str:
        limits = _limits()
        for part in parts:
            _check_value(part, limits, "a part of '~'")
        text = markup_join(parts) if markup else "".join(map(str, parts))
        return _check_value(text, limits, "'~'")  # type: ignore[no-any-return]

    def guarded_value(self, value: Any) -> Any:
        return _check_value(value, _limits(), "a literal")

    def concat(self, parts: Iterable[str]) -> str:
        # Set-blocks, macros, filter blocks, call blocks and blocks all join their output here.
        limits = _limits()
        size = 0
        collected = []
        for part in parts:
            size += len(part)
            _check_size(size, limits, "a captured block")
            collected.append(part)
        return "".join(collected)

    @staticmethod
    def _finalize(value: Any) -> Any:
        return _check_value(value, _limits(), "an output value")

    # -- the sandbox hooks

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        blocked = _BLOCKED_ATTRIBUTES.get(attr)
        if blocked is not None and isinstance(obj, blocked):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call(
        __self,  # Jinja's spelling, so no keyword argument can clash
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        budget = _BUDGET.get()
        limits = _step()
        for key, value in (*enumerate(args), *kwargs.items()):
            if key not in ("_loop_vars", "_block_vars"):  # Jinja's own, not the template's
                _check_value(value, limits, "an argument")
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (str, bytes, bytearray)):
            replaced = _str_method_check(owner, getattr(__obj, "__name__", ""), args, limits)
            if replaced is not None:
                args = replaced
        elif isinstance(__obj, LoopContext) and args:  # a recursive loop: loop(children)
            args = (__self.guarded_loop(args[0]), *args[1:])
        if budget is None:
            return _checked_result(super().call(__context, __obj, *args, **kwargs), limits)
        nested = isinstance(__obj, (Macro, LoopContext))  # a macro, or loop() of a recursive for
        if nested:
            if budget.depth >= limits.max_depth:
                raise LimitExceeded(
                    f"macros or recursive loops nested more than {limits.max_depth} deep"
                )
            budget.depth += 1
        try:
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            if nested:
                budget.depth -= 1
        return _checked_result(result, limits)

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        limits = _step()
        if op == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(count, int) and not isinstance(seq, (int, float)):
                    size = measure(seq, limits.max_value)
                    if count > 0 and size * count > limits.max_value:
                        _check_size(size * count, limits, "'*'")
            if type(left) is int and type(right) is int:
                bits = left.bit_length() + right.bit_length()
                _check_size(bits // 3, limits, "'*' of integers")
        elif op == "**":
            if type(left) is int and type(right) is int and right > 0 and abs(left) > 1:
                _check_size(left.bit_length() * right // 3, limits, "'**'")
        elif op == "%" and isinstance(left, (str, bytes)):
            _check_percent_format(left, right, limits)
        result = self.binop_table[op](left, right)
        return _check_value(result, limits, f"the result of '{op}'")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        # Same as Jinja's wrapper, with a formatter that checks each field's width.
        f_self = value.__self__
        is_format_map = value.__name__ == "format_map"
        formatter: SandboxedFormatter
        if isinstance(f_self, Markup):
            formatter = _CheckedEscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = _CheckedFormatter(self)

        def checked(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            text: str = type(f_self)(formatter.vformat(f_self, args, kwargs))
            return text

        return functools.update_wrapper(checked, value)

    # -- includes, imports and extends count as steps

    def get_template(self, *args: Any, **kwargs: Any) -> jinja2.Template:
        _step()
        return super().get_template(*args, **kwargs)

    def select_template(self, *args: Any, **kwargs: Any) -> jinja2.Template:
        _step()
        return super().select_template(*args, **kwargs)

    def get_or_select_template(self, *args: Any, **kwargs: Any) -> jinja2.Template:
        _step()
        return super().get_or_select_template(*args, **kwargs)
