"""Hugging Face datasets as sources (`hf:<name or saved dir>[:<config>][@<split>]`): loaded with the
`datasets` library (the hub, a data directory or a `save_to_disk` directory) and written once per dataset
fingerprint as Parquet under the cache."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from tasks.data.shards import Source, SourceError, fingerprint


def _parse_hf(spec: str) -> tuple[str, str | None, str]:
    """(name or directory, config, split) from `<name>[:<config>][@<split>]`."""
    body, at, split = spec.rpartition("@")
    if not at or "/" in split or not split:  # the '@' was part of a path
        body, split = spec, "train"
    if Path(body).is_dir():
        return body, None, split
    name, colon, config = body.rpartition(":")
    if colon and name and "/" not in config:
        return name, config or None, split
    return body, None, split


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _hf_load(uri: str, name: str, config: str | None, split: str) -> Any:
    import datasets

    path = Path(name)
    if path.is_dir() and _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise SourceError(
                    f"dataset uri '{uri}': no split '{split}' in {path} (splits: {', '.join(loaded)}); "
                    "add @<split> to the uri"
                )
            return loaded[split]
        return loaded
    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as error:  # the hub client, fsspec and the builders raise many unrelated types
        cause = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:500]
        if path.is_dir():
            raise SourceError(
                f"dataset uri '{uri}': could not load the local data directory {path} ({cause}); "
                "check its data files and split names"
            ) from None
        raise SourceError(
            f"dataset uri '{uri}': could not load from the Hugging Face Hub ({cause}); on a machine without "
            "hub access, save it with `save_to_disk` and use hf:<that dir>, or export it to JSONL/Parquet"
        ) from None


def hf_source(uri: str, cache_dir: Path) -> Source:
    name, config, split = _parse_hf(uri.removeprefix("hf:"))
    if not name:
        raise SourceError(f"dataset uri '{uri}': expected hf:<name or dir>[:<config>][@<split>]")
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise SourceError(
            f"dataset uri '{uri}': hf: needs the datasets package; pip install datasets"
        ) from None
    dataset = _hf_load(uri, name, config, split)
    # A local directory's absolute path differs between machines; its name keeps ids and fingerprint stable.
    shown = Path(name).resolve().name if Path(name).is_dir() else name
    label = f"{shown}@{split}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{shown}-{config}" if config else shown).strip("-.") or "x"
    target = cache_dir / "hf" / safe / dataset._fingerprint / f"{split}.parquet"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{split}.", suffix=".tmp")
        os.close(handle)
        try:
            dataset.to_parquet(tmp)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return Source(
        uri=uri, files=[target], labels=[label], fingerprint=fingerprint([(label, dataset._fingerprint)])
    )
