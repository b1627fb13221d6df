"""OpenLineage dataset names: a (namespace, name) pair per store URI, dataset source and base model.

Store URIs follow OpenLineage's naming spec through the client's own helpers: `s3://bucket/key` is
namespace `s3://bucket`, name `key`; `file:///path` (no host) namespace `file`, name `/path`;
`file://host/path` namespace `file://host`. The name comes from the URI alone, never from the machine
that reads it, so every run, worker and pod reading the same prepared version names the same dataset.
A dataset source that is no store URI keeps its own scheme as namespace (`builtin:tuna_identity` is
`builtin` / `tuna_identity`, `hf:org/name` is `huggingface` / `org/name`); a base model from the Hugging
Face Hub is `huggingface` / its id.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlparse

from tasks.config.catalog import CatalogEntry

# A dataset source's own scheme (`builtin:`, `hf:`) -> the OpenLineage namespace it is named under.
SOURCE_NAMESPACES = {"hf": "huggingface", "builtin": "builtin"}
HUB_NAMESPACE = "huggingface"
PACKAGE_NAMESPACE = "python-package"
_PREFIXED = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(?!//)(.+)$")


def dataset_id(uri: str) -> tuple[str, str]:
    """(namespace, name) of a store URI, a plain path or a dataset source."""
    # The client's naming helpers: the optional extra, loaded only where lineage is built.
    from openlineage.client.naming.dataset import S3, LocalFileSystem, RemoteFileSystem

    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        named = S3(bucket_name=parsed.netloc, object_key=parsed.path.lstrip("/") or "/")
    elif parsed.scheme == "file":
        path = unquote(parsed.path) or "/"
        host = parsed.netloc
        named = RemoteFileSystem(host=host, path=path) if host else LocalFileSystem(path=path)
    elif "://" in text:
        return f"{parsed.scheme}://{parsed.netloc}", parsed.path.lstrip("/") or "/"
    elif match := _PREFIXED.match(text):
        scheme, rest = match.groups()
        return SOURCE_NAMESPACES.get(scheme, scheme), rest
    else:
        named = LocalFileSystem(path=os.path.abspath(text))
    return named.get_namespace(), named.get_name()


def model_id(model: CatalogEntry) -> tuple[str, str]:
    """(namespace, name) of a base model: its hub id, or the store path its weights come from."""
    source = model.source
    if source.hub:
        return HUB_NAMESPACE, source.hub
    if source.path:
        return dataset_id(source.path)
    if source.gguf is not None:
        # A GGUF file shipped inside an installed Python package: named by package and file.
        return PACKAGE_NAMESPACE, f"{source.gguf.package}/{source.gguf.file}"
    return HUB_NAMESPACE, model.hub_id or model.name
