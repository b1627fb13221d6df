"""Step: merge the winner and export it to ONNX. `python -m tasks.export --job <json-or-uri>`

Writes under `output`: `merged/` (the merged model and tokenizer in safetensors: what gets promoted),
then one directory per requested format, each loadable by `ORTModelForCausalLM.from_pretrained(dir)`:
`onnx/` (fp32 with KV cache) and `onnx-int8/` (dynamic INT8 quantization of the fp32 graph).
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tasks import store
from tasks.catalog import CatalogEntry, ModelSource
from tasks.config import EXPORT_FORMATS
from tasks.step import StepError, main

log = logging.getLogger("tunerflow.export")

ONNX_TASK = "text-generation-with-past"
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx_data")
# MLP down projections see the activation outliers of decoder LLMs; one dynamic per-tensor scale for
# their input wrecks accuracy (SmolLM2-135M: per-position greedy agreement with fp32 is 0.53 with them
# quantized, 0.82 without).
INT8_KEEP_FP32 = ("down_proj",)


def weights_size(directory: Path) -> int:
    """Bytes of weight files only, so PyTorch and ONNX sizes compare like for like."""
    return sum(
        p.stat().st_size for p in directory.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )


def merge(job: dict[str, Any], target: Path) -> None:
    """Save the model to ship: the base with the LoRA adapter merged in, or the fully fine-tuned model."""
    from tasks.models import load_model, load_tokenizer

    entry = CatalogEntry.model_validate(job["model"])
    if job.get("model_uri"):
        # The fine-tuned weights replace the base; the entry still supplies the tokenizer overrides.
        entry = entry.model_copy(update={"source": ModelSource(path=job["model_uri"])})
    adapter = job.get("adapter_uri")
    adapter_dir = str(store.local_path(adapter)) if adapter else None
    model = load_model(entry, job["store_root"], adapter_dir=adapter_dir)
    tokenizer = load_tokenizer(entry, job["store_root"])
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def export_onnx(model_dir: Path, target: Path) -> None:
    from optimum.exporters.onnx import main_export

    # check_export measures parity against PyTorch itself, with thresholds the user set.
    main_export(
        str(model_dir),
        str(target),
        task=ONNX_TASK,
        library_name="transformers",
        device="cpu",
        do_validation=False,
    )


def quantize_int8(fp32_dir: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.mkdir(parents=True, exist_ok=True)
    graph = onnx.load(fp32_dir / "model.onnx", load_external_data=False).graph
    keep = [n.name for n in graph.node if n.op_type == "MatMul" and any(k in n.name for k in INT8_KEEP_FP32)]
    quantize_dynamic(
        fp32_dir / "model.onnx",
        target / "model.onnx",
        # Only MatMul weights: quantizing the embedding Gather costs accuracy and saves no compute.
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=keep,
        weight_type=QuantType.QInt8,
        # One scale per output channel keeps outlier columns from crushing the rest of a weight.
        per_channel=True,
        use_external_data_format=any(fp32_dir.glob("*.onnx_data")),
    )
    # Config, generation config and tokenizer, so the directory loads on its own.
    for path in fp32_dir.iterdir():
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(path, target / path.name)


def export(job: dict[str, Any]) -> dict[str, Any]:
    """Merge the winner, export it to the requested ONNX formats and report where and how big."""
    formats = list(job.get("formats") or [])
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown:
        raise StepError(f"export: unknown formats {unknown}; known formats: {list(EXPORT_FORMATS)}")
    if job.get("adapter_uri") and job.get("model_uri"):
        raise StepError("export: give either adapter_uri (LoRA) or model_uri (full fine-tune), not both")
    output = job["output"]
    root = store.ensure_dir(output)
    merged = root / "merged"
    merge(job, merged)
    result: dict[str, Any] = {
        "merged_uri": store.join(output, "merged"),
        "pytorch_size_bytes": weights_size(merged),
        "formats": {},
    }
    if not formats:
        return result
    # int8 is quantized from the fp32 graph; keep that graph aside when onnx itself was not asked for.
    with tempfile.TemporaryDirectory(prefix=".fp32-", suffix=".tmp", dir=root) as scratch:
        fp32 = root / "onnx" if "onnx" in formats else Path(scratch) / "onnx"
        log.info("exporting %s to ONNX (%s)", merged, ONNX_TASK)
        export_onnx(merged, fp32)
        if "onnx-int8" in formats:
            log.info("quantizing to dynamic INT8")
            quantize_int8(fp32, root / "onnx-int8")
    for fmt in formats:
        result["formats"][fmt] = {"uri": store.join(output, fmt), "size_bytes": weights_size(root / fmt)}
    return result


if __name__ == "__main__":
    sys.exit(main("export", export))
