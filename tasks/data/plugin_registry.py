"""The registry of data plugins: what a format or filter plugin is, and the table of registered ones.
Stdlib only. The bottom of the plugin modules: `tasks.data.plugin_discovery` imports plugin files into
it, `tasks.data.plugins` looks names up in it, and `tasks.data.formats` converts with it.

The built-in format names are declared here, not beside their converters in `tasks.data.formats`,
because a plugin may not take one of them and `tasks.data.formats` itself looks plugin formats up.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

KINDS = ("chat", "text", "preference", "unpaired", "vision")
# The built-in formats, in the order they are listed, and the kind of rows each converter produces.
BUILTIN_KINDS: dict[str, str] = {
    "alpaca": "chat",
    "sharegpt": "chat",
    "moss": "chat",
    "guanaco": "chat",
    "messages": "chat",
    "text": "text",
    "preference": "preference",
    "openai_preference": "preference",
    "unpaired": "unpaired",
    "llava": "vision",
    "openai_vision": "vision",
}
BUILTIN_FORMATS = tuple(BUILTIN_KINDS)
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
RESERVED = frozenset({"auto"})

Row = dict[str, Any]


class DataPluginError(ValueError):
    """A plugin that cannot be loaded or registered. A ValueError, so conf validation reports it."""


@dataclass(frozen=True)
class FormatPlugin:
    """A dataset format: source record -> internal row of `kind`.

    `convert` raises `tasks.data.rows.RowError(code, detail)` for a record it cannot use (`missing_field`,
    `empty_field`, `bad_type`, ... like the built-in converters); its output is checked against `kind`.
    `keys` are the source keys it reads, so a conf's `columns` may map them. `detect` tells format
    auto-detection whether a record is in this format (look at the keys only; it must not raise).
    """

    name: str
    kind: Literal["chat", "text", "preference", "unpaired", "vision"]
    keys: tuple[str, ...]
    convert: Callable[[Row], Row]
    detect: Callable[[Row], bool] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("format", self.name)
        if self.kind not in KINDS:
            raise DataPluginError(f"format plugin '{self.name}': kind {self.kind!r} must be one of {KINDS}")
        keys = (self.keys,) if isinstance(self.keys, str) else tuple(self.keys)
        if not all(isinstance(key, str) and key for key in keys):
            raise DataPluginError(f"format plugin '{self.name}': keys must be non-empty strings")
        object.__setattr__(self, "keys", keys)  # a list given by the author is fine; store it hashable
        if not callable(self.convert):
            raise DataPluginError(f"format plugin '{self.name}': convert is not callable")
        if self.detect is not None and not callable(self.detect):
            raise DataPluginError(f"format plugin '{self.name}': detect is not callable")


@dataclass(frozen=True)
class FilterPlugin:
    """A row filter: internal row -> None to keep it, or a reason code (lowercase snake_case) to drop it."""

    name: str
    check: Callable[[Row], str | None]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("filter", self.name)
        if not callable(self.check):
            raise DataPluginError(f"filter plugin '{self.name}': check is not callable")


def _check_name(what: str, name: Any) -> None:
    if not isinstance(name, str) or not NAME.match(name) or name in RESERVED:
        raise DataPluginError(
            f"{what} plugin name {name!r} must be lowercase letters, digits, '.', '_' or '-' "
            f"(and not {', '.join(sorted(RESERVED))})"
        )


# ----------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Entry:
    plugin: FormatPlugin | FilterPlugin
    origin: str  # the file that registered it: same file again is a re-import, not a clash


class _Tables:
    def __init__(self, generation: int = 0) -> None:
        self.formats: dict[str, Entry] = {}
        self.filters: dict[str, Entry] = {}
        self.generation = generation  # bumped on every change, so callers can cache lookups


_tables = _Tables()
# Re-entrant: a plugin module imported while discovery holds it calls register_* (or even format_names()).
lock = threading.RLock()


def format_entries() -> dict[str, Entry]:
    """The registered plugin formats by name, in registration order (read only)."""
    return _tables.formats


def filter_entries() -> dict[str, Entry]:
    """The registered filters by name (read only)."""
    return _tables.filters


def generation() -> int:
    """A number that changes whenever the registry does (for caches of plugin lookups)."""
    return _tables.generation


def origin_of(path: str) -> str:
    return path if path.startswith("<") else os.path.realpath(path)


def _caller_file() -> str:
    """The file of the first frame outside this module: the plugin module that is registering."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return origin_of(frame.f_code.co_filename) if frame is not None else "<unknown>"


def register(plugin: FormatPlugin | FilterPlugin, origin: str) -> FormatPlugin | FilterPlugin:
    """Add a plugin registered from `origin`; the same name from the same origin again is a no-op."""
    is_format = isinstance(plugin, FormatPlugin)
    what, table = ("format", _tables.formats) if is_format else ("filter", _tables.filters)
    with lock:
        if what == "format" and plugin.name in BUILTIN_KINDS:
            raise DataPluginError(
                f"format plugin '{plugin.name}' from {origin} clashes with the built-in format "
                f"'{plugin.name}'; give the plugin another name"
            )
        existing = table.get(plugin.name)
        if existing is not None:
            if existing.origin == origin:
                return existing.plugin  # the same module imported again (e.g. by Airflow's plugin manager)
            raise DataPluginError(
                f"{what} plugin '{plugin.name}' from {origin} clashes with the {what} plugin "
                f"'{plugin.name}' from {existing.origin}; rename one of them"
            )
        table[plugin.name] = Entry(plugin, origin)
        _tables.generation += 1
        return plugin


def register_format(plugin: FormatPlugin) -> FormatPlugin:
    """Add a dataset format; call it at the import of a plugin module."""
    if not isinstance(plugin, FormatPlugin):
        raise DataPluginError(f"register_format takes a FormatPlugin, not {type(plugin).__name__}")
    return register(plugin, _caller_file())


def register_filter(plugin: FilterPlugin) -> FilterPlugin:
    """Add a row filter; call it at the import of a plugin module."""
    if not isinstance(plugin, FilterPlugin):
        raise DataPluginError(f"register_filter takes a FilterPlugin, not {type(plugin).__name__}")
    return register(plugin, _caller_file())


F = TypeVar("F", bound=Callable[..., Any])


def _summary(fn: Callable[..., Any]) -> str:
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def data_format(
    *,
    name: str,
    kind: Literal["chat", "text", "preference", "unpaired", "vision"],
    keys: Iterable[str],
    detect: Callable[[Row], bool] | None = None,
    description: str = "",
) -> Callable[[F], F]:
    """Decorator registering the decorated function as the converter of format `name`."""

    def decorate(fn: F) -> F:
        plugin = FormatPlugin(name, kind, tuple(keys), fn, detect, description or _summary(fn))
        register(plugin, _caller_file())
        return fn

    return decorate


def row_filter(*, name: str, description: str = "") -> Callable[[F], F]:
    """Decorator registering the decorated function as row filter `name`."""

    def decorate(fn: F) -> F:
        register(FilterPlugin(name, fn, description or _summary(fn)), _caller_file())
        return fn

    return decorate


Snapshot = tuple[dict[str, Entry], dict[str, Entry]]


def snapshot() -> Snapshot:
    return dict(_tables.formats), dict(_tables.filters)


def restore(saved: Snapshot) -> None:
    """Drop what a failed plugin registered before failing, so no half-loaded plugin stays usable."""
    if (_tables.formats, _tables.filters) != saved:
        _tables.formats, _tables.filters = dict(saved[0]), dict(saved[1])
        _tables.generation += 1


def clear() -> None:
    """Forget every plugin; the generation moves on, so caches keyed on it do not match again."""
    global _tables
    with lock:
        _tables = _Tables(_tables.generation + 1)
