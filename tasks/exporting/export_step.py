"""The export step's library: merge the winner and export it to ONNX (`python -m tasks.export`).

Writes under `output`: `merged/` (the merged model and tokenizer in safetensors: what gets promoted), then one
directory per requested format, each loadable by `ORTModelForCausalLM.from_pretrained(dir)` and holding the
tokenizer, config and its own `manifest.json` (files + sha256, written last):

- `onnx/`: fp32 with KV cache, for CPU (`tasks.exporting.onnx_fp`).
- `onnx-int8/`: 8-bit, for CPU, from the fp32 graph; static (calibrated) or dynamic (`tasks.exporting.int8`).
- `onnx-fp16/`: fp16 exported on a CUDA device and fused for the CUDA execution provider.
- `gguf/`: `<name>-f16.gguf`, `<name>-q8_0.gguf` and an Ollama `Modelfile`, for llama.cpp and Ollama
  (`tasks.exporting.gguf_export`; llama-family models only). Its files are not an ONNX directory.

`export_formats` does the ONNX part for any merged model directory (the evaluate step scores a job after
quantization with it), with no store or job-spec assumptions.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tasks.config.catalog import CatalogEntry, ModelSource
from tasks.config.export import EXPORT_FORMATS, ExportConfig
from tasks.contracts.export import ExportedFormat, ExportResult, ExportSpec
from tasks.exporting.gguf_export import GGUF, export_gguf
from tasks.exporting.int8 import build_int8
from tasks.exporting.onnx_fp import (
    FP16,
    FP32,
    INT8,
    MODEL_FILE,
    ONNX_TASK,
    cuda_problem,
    export_fp16,
    export_onnx,
    weights_size,
)
from tasks.runtime.errors import StepError
from tasks.storage import store
from tasks.training.base_models import is_prompt_adapter, load_model, load_tokenizer

log = logging.getLogger("tunerflow.export")


def merge(
    entry: CatalogEntry,
    store_root: str,
    target: Path,
    *,
    adapter_uri: str | None = None,
    model_uri: str | None = None,
) -> None:
    """Save the model to ship: the base with the adapter merged in, or the fully fine-tuned model."""
    if model_uri:
        # The fine-tuned weights replace the base; the entry still supplies the tokenizer overrides.
        entry = entry.model_copy(update={"source": ModelSource(path=model_uri)})
    adapter_dir = str(store.fetch(adapter_uri)) if adapter_uri else None
    if adapter_dir and is_prompt_adapter(adapter_dir):
        raise StepError(
            f"export: {adapter_uri} is a prompt-learning adapter (prompt tuning, prefix tuning or P-tuning): "
            "its virtual tokens are not weights and merge into no model; train with a mergeable method "
            "(lora, qlora, adalora, ia3, freeze, full) to export"
        )
    model = load_model(entry, store_root, adapter_dir=adapter_dir)
    tokenizer = load_tokenizer(entry, store_root)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def _check_formats(formats: list[str]) -> None:
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown:
        raise StepError(f"export: unknown formats {unknown}; known formats: {list(EXPORT_FORMATS)}")
    if FP16 in formats:
        problem = cuda_problem()
        if problem:
            raise StepError(
                f"export: onnx-fp16 is exported on a CUDA device and runs on onnxruntime's CUDA execution "
                f"provider, but {problem}. Run the export step on a GPU worker (the kubernetes backend's GPU "
                "pod) or remove onnx-fp16 from export.formats"
            )


def _commit_format(directory: Path, details: dict[str, Any]) -> dict[str, Any]:
    details = {**details, "size_bytes": weights_size(directory)}
    store.commit(store.to_uri(directory), details)
    return details


def export_formats(
    merged_dir: Path,
    target_root: Path,
    formats: list[str],
    export_config: ExportConfig | dict[str, Any],
    *,
    dataset: dict[str, Any] | None = None,
    cache_dir: Path | None = None,
    name: str = "model",
) -> dict[str, Any]:
    """Export a merged Hugging Face model directory to `target_root/<format>/` for each format; returns
    {"formats": {format: {"path", "size_bytes", ...details}}}. A format directory whose manifest is
    written is reused as it is. `dataset` (a prepared dataset: {"name", "uri", "counts"}) gives static INT8
    its `experiment` calibration rows and the held-out rows of the auto choice. `name` names the GGUF
    files (`<name>-<type>.gguf`)."""
    config = ExportConfig.model_validate(export_config)
    formats = list(dict.fromkeys(formats))
    _check_formats(formats)
    merged_dir, target_root = Path(merged_dir), Path(target_root)
    target_root.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, Any]] = {}
    for fmt in formats:
        directory = target_root / fmt
        if store.is_committed(store.to_uri(directory)):
            log.info("%s: already exported at %s", fmt, directory)
            done[fmt] = store.committed_result(store.to_uri(directory))
        elif directory.exists():
            shutil.rmtree(directory)  # half-written by an interrupted run

    with tempfile.TemporaryDirectory(prefix=".fp32-", suffix=".tmp", dir=target_root) as scratch:
        # int8 is quantized from the fp32 graph; keep that graph aside when onnx itself was not asked for.
        fp32 = target_root / FP32 if FP32 in formats else Path(scratch) / FP32
        needs_fp32 = (FP32 in formats and FP32 not in done) or (INT8 in formats and INT8 not in done)
        if needs_fp32 and not (fp32 / MODEL_FILE).exists():
            log.info("exporting %s to ONNX fp32 (%s)", merged_dir, ONNX_TASK)
            export_onnx(merged_dir, fp32)
        if FP32 in formats and FP32 not in done:
            done[FP32] = _commit_format(fp32, {"device": "cpu", "dtype": "fp32"})
        if INT8 in formats and INT8 not in done:
            details = build_int8(fp32, target_root / INT8, config, dataset=dataset, cache_dir=cache_dir)
            done[INT8] = _commit_format(target_root / INT8, {"device": "cpu", "dtype": "int8", **details})
    if FP16 in formats and FP16 not in done:
        log.info("exporting %s to ONNX fp16 on CUDA", merged_dir)
        details = export_fp16(merged_dir, target_root / FP16)
        done[FP16] = _commit_format(target_root / FP16, {"dtype": "fp16", **details})
    if GGUF in formats and GGUF not in done:
        log.info("exporting %s to GGUF %s", merged_dir, config.gguf_types)
        details = export_gguf(merged_dir, target_root / GGUF, config.gguf_types, name)
        done[GGUF] = _commit_format(target_root / GGUF, details)
    return {"formats": {fmt: {"path": str(target_root / fmt), **done[fmt]} for fmt in formats}}


def export(job: ExportSpec) -> ExportResult:
    """Merge the winner, export it to the requested formats and report where, how big and how."""
    _check_formats(job.formats)
    root = store.local_dir(job.output)
    merged = root / "merged"
    merge(job.model, job.store_root, merged, adapter_uri=job.adapter_uri, model_uri=job.model_uri)
    formats: dict[str, ExportedFormat] = {}
    if job.formats:
        # Calibration (tasks.exporting.calibration) reads the prepared dataset as the JSON it is stored as.
        dataset = job.dataset.model_dump(mode="json") if job.dataset else None
        exported = export_formats(
            merged, root, job.formats, job.export_config, dataset=dataset, name=job.model.name
        )
        for fmt, details in exported["formats"].items():
            kept = {key: value for key, value in details.items() if key != "path"}
            formats[fmt] = ExportedFormat(uri=store.join(job.output, fmt), **kept)
    return ExportResult(
        merged_uri=store.join(job.output, "merged"), pytorch_size_bytes=weights_size(merged), formats=formats
    )
