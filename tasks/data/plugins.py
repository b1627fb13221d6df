"""Data plugins: dataset formats and row filters added without changing `tasks/`. Stdlib only.

A plugin is a Python module that calls `register_format` / `register_filter` (or uses the `data_format` /
`row_filter` decorators) when it is imported; the experiment conf then names what it registers
(`format: dolly`, `filters: [drop_refusals]`). `plugins/data/dolly.py` is the example to copy.

`load_plugins()` finds plugin modules in three places, in this order:

1. every `*.py` file in the repository's `plugins/data/` directory;
2. every `*.py` file in each directory listed in `$TUNERFLOW_DATA_PLUGINS` (os.pathsep-separated);
3. the entry points in group `tunerflow.data_plugins` of installed packages; an entry point names a
   module that registers when imported, or a `FormatPlugin` / `FilterPlugin` (or a list of them).

Files whose name starts with `_` or `.` are skipped (private helpers, `__init__.py`). A file is imported
under a private module name, so it never shadows another module.

`plugins/` is also Airflow's plugins folder, and Airflow's plugin manager imports every `.py` file under
it a second time under its own module name. Registering the same name again from the same file is
therefore a no-op; a different file (or a built-in format) claiming a taken name is an error. Plugin
modules must stay light at import (stdlib only; import heavy libraries inside the functions).

The lookups (`format_names`, `get_format`, `kind_of`, `apply_filters`, ...) load the plugins on first
use, so a fresh worker process finds the same plugins as its parent. A plugin registered only from
code (not from a discovered module) is not seen by worker processes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, TypeVar

ENV_VAR = "TUNERFLOW_DATA_PLUGINS"
ENTRY_POINT_GROUP = "tunerflow.data_plugins"
# Same directory as tasks.config.catalog.REPO_ROOT / "plugins" / "data"; not imported from there, because
# tasks.config.catalog pulls in yaml and pydantic and this module is stdlib only.
REPO_PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "data"

KINDS = ("chat", "text", "preference")
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
REASON = re.compile(r"^[a-z][a-z0-9_]*$")
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
    kind: Literal["chat", "text", "preference"]
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


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Entry:
    plugin: Any
    origin: str  # the file that registered it: same file again is a re-import, not a clash


class _State:
    def __init__(self) -> None:
        self.formats: dict[str, _Entry] = {}
        self.filters: dict[str, _Entry] = {}
        self.files: set[Path] = set()  # imported (or being imported) plugin files
        self.entry_points_loaded = False
        self.loaded_for: str | None = None  # $TUNERFLOW_DATA_PLUGINS of the last complete load
        self.generation = 0  # bumped on every registry change, so callers can cache lookups


_state = _State()
# Re-entrant: a plugin module imported by load_plugins calls register_* (or even format_names()).
_lock = threading.RLock()


def _origin(path: str) -> str:
    return path if path.startswith("<") else os.path.realpath(path)


def _caller_file() -> str:
    """The file of the first frame outside this module: the plugin module that is registering."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return _origin(frame.f_code.co_filename) if frame is not None else "<unknown>"


def _register(table: dict[str, _Entry], what: str, plugin: Any, origin: str) -> Any:
    with _lock:
        if what == "format" and plugin.name in _builtin_formats():
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
        table[plugin.name] = _Entry(plugin, origin)
        _state.generation += 1
        return plugin


def register_format(plugin: FormatPlugin) -> FormatPlugin:
    """Add a dataset format; call it at the import of a plugin module."""
    if not isinstance(plugin, FormatPlugin):
        raise DataPluginError(f"register_format takes a FormatPlugin, not {type(plugin).__name__}")
    return _register(_state.formats, "format", plugin, _caller_file())


def register_filter(plugin: FilterPlugin) -> FilterPlugin:
    """Add a row filter; call it at the import of a plugin module."""
    if not isinstance(plugin, FilterPlugin):
        raise DataPluginError(f"register_filter takes a FilterPlugin, not {type(plugin).__name__}")
    return _register(_state.filters, "filter", plugin, _caller_file())


F = TypeVar("F", bound=Callable[..., Any])


def _summary(fn: Callable[..., Any]) -> str:
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def data_format(
    *,
    name: str,
    kind: Literal["chat", "text", "preference"],
    keys: Iterable[str],
    detect: Callable[[Row], bool] | None = None,
    description: str = "",
) -> Callable[[F], F]:
    """Decorator registering the decorated function as the converter of format `name`."""

    def decorate(fn: F) -> F:
        plugin = FormatPlugin(name, kind, tuple(keys), fn, detect, description or _summary(fn))
        _register(_state.formats, "format", plugin, _caller_file())
        return fn

    return decorate


def row_filter(*, name: str, description: str = "") -> Callable[[F], F]:
    """Decorator registering the decorated function as row filter `name`."""

    def decorate(fn: F) -> F:
        plugin = FilterPlugin(name, fn, description or _summary(fn))
        _register(_state.filters, "filter", plugin, _caller_file())
        return fn

    return decorate


# --------------------------------------------------------------------------------------------- discovery


def plugin_dirs() -> list[Path]:
    """The directories searched for plugin files: the repository's plugins/data, then those in
    $TUNERFLOW_DATA_PLUGINS."""
    listed = os.environ.get(ENV_VAR, "").split(os.pathsep)
    extra = [Path(part).expanduser() for part in listed if part.strip()]
    return [REPO_PLUGIN_DIR, *extra]


def load_plugins() -> None:
    """Import every plugin module not imported yet. Idempotent and cheap once done; a later change of
    $TUNERFLOW_DATA_PLUGINS is picked up on the next call. DataPluginError names a plugin that fails."""
    if _state.loaded_for == os.environ.get(ENV_VAR, ""):
        return
    with _lock:
        env = os.environ.get(ENV_VAR, "")
        for index, directory in enumerate(plugin_dirs()):
            if directory.is_dir():
                for path in sorted(directory.glob("*.py")):
                    if not path.name.startswith(("_", ".")):
                        _load_file(path.resolve())
            elif index > 0:  # a typo in the variable should not silently lose the plugins
                raise DataPluginError(f"{ENV_VAR} names {directory}, which is not a directory")
        _load_entry_points()
        _state.loaded_for = env


def _load_file(path: Path) -> None:
    if path in _state.files:
        return
    _state.files.add(path)  # before exec: a module that calls format_names() must not import itself again
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"_tunerflow_data_plugin_{stem}_{digest}"
    saved = _snapshot()
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a loadable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(module_name, None)
        _state.files.discard(path)  # so the next call reports it again instead of running without it
        _restore(saved)
        cause = f"{type(error).__name__}: {error}"
        raise DataPluginError(f"data plugin {path} failed to import: {cause}") from error


def _load_entry_points() -> None:
    if _state.entry_points_loaded:
        return
    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"data plugin entry point '{point.name} = {point.value}'"
        saved = _snapshot()
        try:
            loaded = point.load()
            _register_objects(loaded, f"<entry point {point.value}>")
        except Exception as error:
            _restore(saved)
            raise DataPluginError(f"{where} failed to load: {type(error).__name__}: {error}") from error
    _state.entry_points_loaded = True


def _register_objects(loaded: Any, origin: str) -> None:
    """An entry point's object: a module (registered at import) or plugin objects to register here."""
    items = loaded if isinstance(loaded, (list, tuple)) else [loaded]
    for item in items:
        if isinstance(item, FormatPlugin):
            _register(_state.formats, "format", item, origin)
        elif isinstance(item, FilterPlugin):
            _register(_state.filters, "filter", item, origin)


def _snapshot() -> tuple[dict[str, _Entry], dict[str, _Entry]]:
    return dict(_state.formats), dict(_state.filters)


def _restore(saved: tuple[dict[str, _Entry], dict[str, _Entry]]) -> None:
    """Drop what a failed plugin registered before failing, so no half-loaded plugin stays usable."""
    if (_state.formats, _state.filters) != saved:
        _state.formats, _state.filters = dict(saved[0]), dict(saved[1])
        _state.generation += 1


def _reset_for_tests() -> None:
    """Forget every plugin and loaded file (tests only)."""
    global _state
    with _lock:
        for name in [name for name in sys.modules if name.startswith("_tunerflow_data_plugin_")]:
            del sys.modules[name]
        generation = _state.generation
        _state = _State()
        _state.generation = generation + 1  # caches keyed on the generation must not match again


# ------------------------------------------------------------------------------------------------ lookups


def _builtin_formats() -> tuple[str, ...]:
    # The same names as tasks.config.experiment.BUILTIN_FORMATS; imported late because
    # tasks.data.formats imports this.
    from tasks.data.formats import FORMATS

    return FORMATS


def generation() -> int:
    """A number that changes whenever the registry does (for caches of plugin lookups)."""
    return _state.generation


def format_plugins() -> tuple[FormatPlugin, ...]:
    """The plugin formats, in registration order (the order their detectors are tried)."""
    load_plugins()
    return tuple(entry.plugin for entry in _state.formats.values())


def format_names() -> tuple[str, ...]:
    """The built-in formats, then the plugin formats (sorted)."""
    load_plugins()
    return _builtin_formats() + tuple(sorted(_state.formats))


def filter_names() -> tuple[str, ...]:
    load_plugins()
    return tuple(sorted(_state.filters))


def _where() -> str:
    return f"plugins/data, a directory in ${ENV_VAR}, or an entry point in group {ENTRY_POINT_GROUP}"


def get_format(name: str) -> FormatPlugin:
    """The plugin format `name`; ValueError naming the known ones."""
    load_plugins()
    entry = _state.formats.get(name)
    if entry is None:
        known = ", ".join(sorted(_state.formats)) or "none"
        raise ValueError(
            f"unknown format '{name}'; built-in formats: {', '.join(_builtin_formats())}; plugin formats: "
            f"{known} (data plugins are found in {_where()})"
        )
    return entry.plugin


def get_filter(name: str) -> FilterPlugin:
    """The row filter `name`; ValueError naming the known ones."""
    load_plugins()
    entry = _state.filters.get(name)
    if entry is None:
        known = ", ".join(sorted(_state.filters)) or "none"
        raise ValueError(
            f"unknown filter '{name}'; plugin filters: {known} (data plugins are found in {_where()})"
        )
    return entry.plugin


def kind_of(fmt: str) -> str:
    """The kind of rows a format produces: text, preference or chat."""
    if fmt in ("text", "preference"):
        return fmt
    if fmt in _builtin_formats():
        return "chat"
    return get_format(fmt).kind


def apply_filters(row: Row, names: list[str]) -> str | None:
    """The reason code of the first filter in `names` that rejects the row, else None.

    A filter sees validated internal rows, so an exception in one is a bug in the filter, not bad data:
    it propagates, with a note naming the filter."""
    for name in names:
        plugin = get_filter(name)
        try:
            reason = plugin.check(row)
        except Exception as error:
            error.add_note(f"in data filter '{name}' ({_state.filters[name].origin})")
            raise
        if reason is None:
            continue
        if not isinstance(reason, str) or not REASON.match(reason):
            raise DataPluginError(
                f"data filter '{name}' returned {reason!r}; a filter returns None to keep a row or a "
                "lowercase snake_case reason code to drop it"
            )
        return reason
    return None
