"""A registry's JSON records in the store, through the storage backend's interface (the same on file://
and s3://): plain reads and writes, the exclusive create that claims a version number and the
replace-if-unchanged that moves the production pointer. A missing bucket becomes a RegistryError that
names the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tasks.storage import layout, store

ENTRY = "entry.json"


class RegistryError(RuntimeError):
    """A registry request that cannot be honoured (unknown version, nothing to roll back to)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def version_path(version: int, filename: str = ENTRY) -> tuple[str, str, str]:
    """Where a version's records live, relative to the registry: versions/<n>/<filename>."""
    return ("versions", str(int(version)), filename)


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode()


class Records:
    """The records of registry `name` under store `root`; every path is relative to the registry."""

    def __init__(self, root: str, name: str) -> None:
        self.name = name
        self.prefix = layout.registry(root, name)
        self.backend = store.backend_for(self.prefix)

    def uri(self, *parts: str) -> str:
        return store.join(self.prefix, *parts)

    @contextmanager
    def _named(self) -> Iterator[None]:
        try:
            yield
        except store.MissingBucket as error:
            raise RegistryError(
                f"registry '{self.name}' at {self.prefix}: {error}; "
                "create it or point --store / TUNERFLOW_STORE at an existing one"
            ) from None

    def read_tagged(self, *parts: str) -> tuple[dict[str, Any], str] | None:
        """(the record, its tag for `replace`), or None when it does not exist."""
        with self._named():
            found = self.backend.read_tagged(self.uri(*parts))
        return (json.loads(found[0]), found[1]) if found else None

    def read(self, *parts: str) -> dict[str, Any] | None:
        found = self.read_tagged(*parts)
        return found[0] if found else None

    def write(self, payload: dict[str, Any], *parts: str) -> None:
        with self._named():
            self.backend.write_bytes(self.uri(*parts), _encode(payload))

    def create(self, payload: dict[str, Any], *parts: str) -> bool:
        """Write only if absent; False when the record exists (or another create of it is in flight)."""
        with self._named():
            return self.backend.create_if_absent(self.uri(*parts), _encode(payload))

    def replace(self, payload: dict[str, Any], tag: str, *parts: str) -> bool:
        """Write only while the record is still the one `read_tagged` returned with `tag`."""
        with self._named():
            return self.backend.replace_if_unchanged(self.uri(*parts), _encode(payload), tag)

    def names(self, *parts: str) -> list[str]:
        """Names directly under a directory of the registry; empty when there is none (bucket included)."""
        return self.backend.list_names(self.uri(*parts))

    def lines(self, *parts: str) -> list[dict[str, Any]]:
        """The records of a JSON-lines file; empty when there is none."""
        try:
            text = self.backend.read_bytes(self.uri(*parts)).decode()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]
