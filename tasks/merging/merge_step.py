"""The merge step's library (`python -m tasks.merge`): fetch the parts' committed weights, merge them
over the base model and write the candidate as a training would, `adapter/` or `model/` with the
tokenizer, returning the `TrainResult` the step commits."""

from __future__ import annotations

import logging
import time

from tasks.contracts.merge import MergeSpec
from tasks.contracts.train import TrainResult
from tasks.merging.full import merge_models
from tasks.merging.lora import merge_adapters
from tasks.storage import store
from tasks.training.base_models import load_model, load_tokenizer
from tasks.training.train_types import ensure_chat_template

log = logging.getLogger("tunerflow.merge")


def merge(job: MergeSpec) -> TrainResult:
    """Merge the spec's parts into one candidate under `output`."""
    import torch

    started = time.perf_counter()
    labels = [part.label for part in job.parts]
    directories = [store.fetch(part.adapter_uri or part.model_uri) for part in job.parts]
    log.info("merging %s with %s, weights %s", labels, job.method, job.weights)
    # DARE drops values at random from torch's generator: a retry of the same spec merges the same model.
    torch.manual_seed(job.seed)
    model = load_model(job.model, job.store_root)
    target = store.local_dir(job.output) / ("adapter" if job.adapters else "model")
    if job.adapters:
        merge_adapters(model, directories, labels, job.weights, job.method, job.density, target)
    else:
        merge_models(model, directories, labels, job.weights, job.method, job.density)
        model.save_pretrained(target, safe_serialization=True)
    # The tokenizer a training saves beside its weights: the base's, overrides and chat template applied.
    tokenizer = load_tokenizer(job.model, job.store_root)
    ensure_chat_template(tokenizer, job.model)
    tokenizer.save_pretrained(target)
    uri = store.uri_of(target)
    return TrainResult(
        adapter_uri=uri if job.adapters else None,
        model_uri=None if job.adapters else uri,
        job_id=job.job_id,
        label=job.label,
        status="succeeded",
        method=job.training.method,
        runtime_s=round(time.perf_counter() - started, 2),
        merged_from=labels,
        merge_method=job.method,
    )
