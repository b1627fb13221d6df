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

This module is what plugin authors and the rest of `tasks` import: the registration API (from
`tasks.data.plugin_registry`), discovery (`tasks.data.plugin_discovery`) and the lookups below. The
lookups (`format_names`, `get_format`, `kind_of`, `apply_filters`, ...) load the plugins on first use,
so a fresh worker process finds the same plugins as its parent. A plugin registered only from code (not
from a discovered module) is not seen by worker processes.
"""

from __future__ import annotations

import re

from tasks.data import plugin_discovery
from tasks.data.plugin_discovery import ENTRY_POINT_GROUP, ENV_VAR, load_plugins, plugin_dirs
from tasks.data.plugin_registry import (
    BUILTIN_FORMATS,
    BUILTIN_KINDS,
    DataPluginError,
    FilterPlugin,
    FormatPlugin,
    Row,
    data_format,
    filter_entries,
    format_entries,
    generation,
    register_filter,
    register_format,
    row_filter,
)

__all__ = [
    "BUILTIN_FORMATS",
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "DataPluginError",
    "FilterPlugin",
    "FormatPlugin",
    "apply_filters",
    "data_format",
    "filter_names",
    "format_names",
    "format_plugins",
    "generation",
    "get_filter",
    "get_format",
    "kind_of",
    "load_plugins",
    "plugin_dirs",
    "register_filter",
    "register_format",
    "row_filter",
]

REASON = re.compile(r"^[a-z][a-z0-9_]*$")


def format_plugins() -> tuple[FormatPlugin, ...]:
    """The plugin formats, in registration order (the order their detectors are tried)."""
    load_plugins()
    return tuple(entry.plugin for entry in format_entries().values())


def format_names() -> tuple[str, ...]:
    """The built-in formats, then the plugin formats (sorted)."""
    load_plugins()
    return BUILTIN_FORMATS + tuple(sorted(format_entries()))


def filter_names() -> tuple[str, ...]:
    load_plugins()
    return tuple(sorted(filter_entries()))


def _where() -> str:
    return f"plugins/data, a directory in ${ENV_VAR}, or an entry point in group {ENTRY_POINT_GROUP}"


def get_format(name: str) -> FormatPlugin:
    """The plugin format `name`; ValueError naming the known ones."""
    load_plugins()
    entry = format_entries().get(name)
    if entry is None:
        known = ", ".join(sorted(format_entries())) or "none"
        raise ValueError(
            f"unknown format '{name}'; built-in formats: {', '.join(BUILTIN_FORMATS)}; plugin formats: "
            f"{known} (data plugins are found in {_where()})"
        )
    return entry.plugin


def get_filter(name: str) -> FilterPlugin:
    """The row filter `name`; ValueError naming the known ones."""
    load_plugins()
    entry = filter_entries().get(name)
    if entry is None:
        known = ", ".join(sorted(filter_entries())) or "none"
        raise ValueError(
            f"unknown filter '{name}'; plugin filters: {known} (data plugins are found in {_where()})"
        )
    return entry.plugin


def kind_of(fmt: str) -> str:
    """The kind of rows a format produces: text, preference or chat."""
    return BUILTIN_KINDS.get(fmt) or get_format(fmt).kind


def apply_filters(row: Row, names: list[str]) -> str | None:
    """The reason code of the first filter in `names` that rejects the row, else None.

    A filter sees validated internal rows, so an exception in one is a bug in the filter, not bad data:
    it propagates, with a note naming the filter."""
    for name in names:
        plugin = get_filter(name)
        try:
            reason = plugin.check(row)
        except Exception as error:
            error.add_note(f"in data filter '{name}' ({filter_entries()[name].origin})")
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


def _reset_for_tests() -> None:
    """Forget every plugin and loaded file (tests only)."""
    plugin_discovery.forget()
