"""Finding and importing data plugin modules (see `tasks.data.plugins` for where they are looked for).
Stdlib only.

A file is imported under a private module name, so it never shadows another module; whatever a plugin
registered before it failed to import is dropped again, so no half-loaded plugin stays usable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from tasks.data import plugin_registry as registry
from tasks.data.plugin_registry import DataPluginError, FilterPlugin, FormatPlugin

ENV_VAR = "TUNERFLOW_DATA_PLUGINS"
ENTRY_POINT_GROUP = "tunerflow.data_plugins"
# Same directory as tasks.config.catalog.REPO_ROOT / "plugins" / "data"; not imported from there, because
# tasks.config.catalog pulls in yaml and pydantic and this module is stdlib only.
REPO_PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "data"
MODULE_PREFIX = "_tunerflow_data_plugin_"


class _Loaded:
    def __init__(self) -> None:
        self.files: set[Path] = set()  # imported (or being imported) plugin files
        self.entry_points = False
        self.env: str | None = None  # $TUNERFLOW_DATA_PLUGINS of the last complete load


_loaded = _Loaded()


def plugin_dirs() -> list[Path]:
    """The directories searched for plugin files: the repository's plugins/data, then those in
    $TUNERFLOW_DATA_PLUGINS."""
    listed = os.environ.get(ENV_VAR, "").split(os.pathsep)
    extra = [Path(part).expanduser() for part in listed if part.strip()]
    return [REPO_PLUGIN_DIR, *extra]


def load_plugins() -> None:
    """Import every plugin module not imported yet. Idempotent and cheap once done; a later change of
    $TUNERFLOW_DATA_PLUGINS is picked up on the next call. DataPluginError names a plugin that fails."""
    if _loaded.env == os.environ.get(ENV_VAR, ""):
        return
    with registry.lock:
        env = os.environ.get(ENV_VAR, "")
        for index, directory in enumerate(plugin_dirs()):
            if directory.is_dir():
                for path in sorted(directory.glob("*.py")):
                    if not path.name.startswith(("_", ".")):
                        _load_file(path.resolve())
            elif index > 0:  # a typo in the variable should not silently lose the plugins
                raise DataPluginError(f"{ENV_VAR} names {directory}, which is not a directory")
        _load_entry_points()
        _loaded.env = env


def _load_file(path: Path) -> None:
    if path in _loaded.files:
        return
    _loaded.files.add(path)  # before exec: a module that calls format_names() must not import itself again
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"{MODULE_PREFIX}{stem}_{digest}"
    saved = registry.snapshot()
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a loadable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(module_name, None)
        _loaded.files.discard(path)  # so the next call reports it again instead of running without it
        registry.restore(saved)
        cause = f"{type(error).__name__}: {error}"
        raise DataPluginError(f"data plugin {path} failed to import: {cause}") from error


def _load_entry_points() -> None:
    if _loaded.entry_points:
        return
    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"data plugin entry point '{point.name} = {point.value}'"
        saved = registry.snapshot()
        try:
            loaded = point.load()
            _register_objects(loaded, f"<entry point {point.value}>")
        except Exception as error:
            registry.restore(saved)
            raise DataPluginError(f"{where} failed to load: {type(error).__name__}: {error}") from error
    _loaded.entry_points = True


def _register_objects(loaded: Any, origin: str) -> None:
    """An entry point's object: a module (registered at import) or plugin objects to register here."""
    items = loaded if isinstance(loaded, (list, tuple)) else [loaded]
    for item in items:
        if isinstance(item, (FormatPlugin, FilterPlugin)):
            registry.register(item, origin)


def forget() -> None:
    """Forget every loaded file and entry point, and what they registered (tests only)."""
    global _loaded
    with registry.lock:
        for name in [name for name in sys.modules if name.startswith(MODULE_PREFIX)]:
            del sys.modules[name]
        _loaded = _Loaded()
        registry.clear()
