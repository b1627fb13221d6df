"""Which local paths a conf may point to: `TUNERFLOW_ALLOWED_PATHS`, the one rule for every field.

A deployment lists the directories a conf or a registered dataset may read from (separated by
`os.pathsep` or commas). A local path, `file://` URI, glob or `hf:` directory is allowed when it lies
under one of them once symlinks and `..` are resolved (component by component: `/data-evil` is not under
`/data`); remote URIs (`s3://`, `hf:<hub id>`) and `builtin:` names are not local paths and pass.

When the variable is unset:
- the deployment side (the first task of a run, whether triggered by the form, REST or `dags test`, and
  the UI plugin) allows `server_defaults`: the store root when it is local, include/data, the config
  directory and the tunerflow cache (where remote inputs are mirrored), never `/`;
- the CLI and library callers on a user's own machine (`configured()` is None) allow every path.

Stdlib and `tasks.storage.store` (which alone knows URI schemes) only: imported by `tasks.pipeline.plan`
and the UI plugin.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from tasks.config.paths import config_dir, data_dir
from tasks.storage import store

ENV = "TUNERFLOW_ALLOWED_PATHS"
# The prefixes of a dataset or model URI that name something other than a storage URI.
_HF = "hf:"
_BUILTIN = "builtin:"


def _real(path: str | Path) -> Path:
    """The path with `~`, `..` and every symlink resolved (relative paths against the working directory)."""
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def parse(value: str) -> list[Path]:
    """The roots a `TUNERFLOW_ALLOWED_PATHS` value lists (os.pathsep- or comma-separated), resolved."""
    parts = [part.strip() for part in re.split(rf"[,{re.escape(os.pathsep)}]", value)]
    return [_real(part) for part in parts if part]


def configured() -> list[Path] | None:
    """The roots the deployment set; None when `TUNERFLOW_ALLOWED_PATHS` is unset or empty."""
    value = os.environ.get(ENV, "").strip()
    return parse(value) if value else None


def _local_root(store_root: str) -> Path | None:
    path = store.local_path_or_none(store_root)
    return _real(path) if path is not None else None


def server_defaults(store_root: str) -> list[Path]:
    """The roots the deployment side allows when the variable is unset (see the module docstring)."""
    roots = [_local_root(store_root), _real(data_dir()), _real(config_dir()), _real(store.cache_root())]
    return [root for root in roots if root is not None]


def server_roots(store_root: str) -> list[Path]:
    """What the deployment side allows: the configured roots, else `server_defaults`."""
    return configured() or server_defaults(store_root)


def _local_str(uri: str) -> str | None:
    path = store.local_path_or_none(uri)
    return str(path) if path is not None else None


def local_target(uri: str) -> str | None:
    """The local path a URI reads, or None when it is not local (s3://, a hub name, builtin:)."""
    if uri.startswith(_BUILTIN):
        return None
    if uri.startswith(_HF):
        # hf:<dir>[:<config>][@<split>]: a directory when written as a path or a URI, else a hub name.
        rest = uri[len(_HF) :]
        if "://" in rest:
            return _local_str(rest)
        target = re.split(r"[:@]", rest, maxsplit=1)[0]
        return target if target.startswith(("/", ".", "~")) else None
    return _local_str(uri)


def _glob_base(path: str) -> tuple[str, bool]:
    """(the part of a glob before its first wildcard, whether a `..` follows a wildcard)."""
    parts = Path(path).parts
    for index, part in enumerate(parts):
        if glob.has_magic(part):
            escapes = ".." in parts[index:]
            return str(Path(*parts[:index])) if index else ".", escapes
    return path, False


def is_allowed(path: str, roots: Sequence[Path]) -> bool:
    base, escapes = _glob_base(path)
    if escapes:
        return False
    try:
        real = _real(base)
    except (ValueError, OSError):  # a NUL byte or a path the OS refuses to resolve: nothing can read it
        return False
    return any(real == root or real.is_relative_to(root) for root in roots)


def uri_problem(field: str, uri: str | None, roots: Sequence[Path] | None) -> str | None:
    """A message naming `field` and the allowed roots when `uri` reads a local path outside them."""
    if uri is None or roots is None:
        return None
    target = local_target(uri)
    if target is None or is_allowed(target, roots):
        return None
    listed = ", ".join(str(root) for root in roots)
    return (
        f"{field}: '{uri}' is outside the directories this deployment allows ({listed}); move the file "
        f"under one of them or ask the operator to add its directory to {ENV}"
    )


def dataset_uris(prefix: str, dataset: dict) -> Iterable[tuple[str, str | None]]:
    """(field, uri) of every place a dataset definition (a DatasetConfig as JSON) reads rows from."""
    dot = f"{prefix}." if prefix else ""
    for key in ("uri", "train_uri", "validation_uri", "test_uri"):
        yield f"{dot}{key}", dataset.get(key)
    for index, source in enumerate(dataset.get("sources") or []):
        yield f"{dot}sources.{index}.uri", source.get("uri")


def problems(fields: Iterable[tuple[str, str | None]], roots: Sequence[Path] | None) -> list[str]:
    found = (uri_problem(field, uri, roots) for field, uri in fields)
    return [problem for problem in found if problem]
