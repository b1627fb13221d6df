"""tasks.training.base_models: a GGUF base model is converted once into the store, however many jobs
want it at the same time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tasks.config.catalog import default_model
from tasks.storage import layout, store
from tasks.training import base_models


def test_jobs_wanting_one_gguf_base_model_at_once_convert_it_once(tmp_path, monkeypatch):
    entry = default_model()
    assert entry.source.gguf is not None, "the default catalog model is the bundled GGUF one"
    conversions = []

    def convert(entry_, target: Path) -> None:
        conversions.append(entry_.name)
        time.sleep(1.0)  # long enough for every other job to arrive while it converts
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(base_models, "_convert_gguf", convert)
    root = tmp_path.as_uri()
    found: list[str] = []
    jobs = [
        threading.Thread(target=lambda: found.append(base_models.weights_location(entry, root)))
        for _ in range(3)
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()

    assert conversions == [entry.name]
    assert len(found) == 3 and len(set(found)) == 1
    assert (Path(found[0]) / "config.json").exists()
    assert store.is_committed(layout.base_model(root, entry.name))
