"""OpenLineage datasets from store URIs, with the facets every kind of dataset shares.

`Lineage` is what a step reports: its input and output datasets. `input_dataset` / `output_dataset` name
a URI (tasks.lineage.naming) and attach facets; `content` summarises the committed files under a prefix
from the `manifest.json` that lists them (its own, or a committed ancestor's), which becomes the
`tunerflow_content` facet, the standard `version` facet (the content hash) and, on an output, the
standard `outputStatistics` facet (files, bytes, rows when known).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from tasks.lineage.naming import dataset_id
from tasks.storage import store

MANIFEST = "manifest.json"
# How far up from a URI a committed manifest may list it (an adapter under its train output, a format
# under the export's): a step output's files sit at most this deep below its manifest.
MAX_ANCESTORS = 3


@dataclass
class Lineage:
    """One step's datasets, as OpenLineage `InputDataset` / `OutputDataset` objects."""

    inputs: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.inputs or self.outputs)


@dataclass(frozen=True)
class Content:
    """The committed files under a prefix, as a manifest lists them."""

    content_hash: str
    files: int
    size_bytes: int
    manifest: str


def _manifest_listing(uri: str) -> tuple[str, dict[str, Any], str] | None:
    """(manifest URI, its files, the path of `uri` below it) of the nearest committed manifest at or
    above `uri`; None when nothing above it is committed."""
    prefix, below = uri.rstrip("/"), ""
    for _ in range(MAX_ANCESTORS + 1):
        manifest_uri = store.join(prefix, MANIFEST)
        try:
            manifest = store.read_json(manifest_uri)
        except (FileNotFoundError, NotADirectoryError):
            parent, _, name = prefix.rpartition("/")
            if not parent or not name or parent.endswith(("//", ":/")):  # at the scheme's root
                return None
            prefix, below = parent, f"{name}/{below}" if below else name
            continue
        return manifest_uri, manifest.get("files") or {}, below
    return None


def content(uri: str) -> Content | None:
    """The committed files under `uri` (a committed prefix, or a directory inside one) and one hash over
    their sorted (path, sha256) pairs, so the same files give the same hash wherever they are stored."""
    found = _manifest_listing(uri)
    if found is None:
        return None
    manifest_uri, files, below = found
    start = f"{below}/" if below else ""
    mine = {path[len(start) :]: meta for path, meta in sorted(files.items()) if path.startswith(start)}
    if not mine:
        return None
    digest = hashlib.sha256()
    for path, meta in mine.items():
        digest.update(f"{path}\0{meta.get('sha256', '')}\n".encode())
    size = sum(int(meta.get("size") or 0) for meta in mine.values())
    return Content(f"sha256:{digest.hexdigest()}", len(mine), size, manifest_uri)


def _facets(extra: list[Any], found: Content | None, version: str | None) -> dict[str, Any]:
    # The client's standard facets and ours: the optional extra, loaded only where lineage is built.
    from openlineage.client.facet_v2 import dataset_version_dataset

    from tasks.lineage.facets import ContentFacet  # imports the client too (see above)

    facets: dict[str, Any] = {}
    if found is not None:
        facets[ContentFacet.KEY] = ContentFacet(
            contentHash=found.content_hash,
            files=found.files,
            sizeBytes=found.size_bytes,
            manifest=found.manifest,
        )
    chosen = version or (found.content_hash if found else None)
    if chosen:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=chosen)
    for facet in extra:
        if facet is not None:
            facets[facet.KEY] = facet
    return facets


def input_dataset(
    uri: str | None, *facets: Any, version: str | None = None, name: tuple[str, str] | None = None
) -> Any:
    """An `InputDataset` for `uri` (or the given (namespace, name)), with its content facets when it is
    committed, and `facets` (tunerflow's, each under its KEY)."""
    # The client's event classes: the optional extra, loaded only where lineage is built.
    from openlineage.client.event_v2 import InputDataset

    namespace, dataset_name = name or dataset_id(str(uri))
    found = content(uri) if uri else None
    return InputDataset(namespace=namespace, name=dataset_name, facets=_facets(list(facets), found, version))


def output_dataset(uri: str, *facets: Any, version: str | None = None, rows: int | None = None) -> Any:
    """An `OutputDataset` for `uri` with its content facets and `outputStatistics` (files, bytes, and
    `rows` when given), and `facets`."""
    # The client's event and facet classes: the optional extra, loaded only where lineage is built.
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    namespace, dataset_name = dataset_id(uri)
    found = content(uri)
    statistics = {}
    if found is not None or rows is not None:
        statistics["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=rows,
            size=found.size_bytes if found else None,
            fileCount=found.files if found else None,
        )
    return OutputDataset(
        namespace=namespace,
        name=dataset_name,
        facets=_facets(list(facets), found, version),
        outputFacets=statistics,
    )
