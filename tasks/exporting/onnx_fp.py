"""fp32 and fp16 ONNX graphs (optimum, KV cache) and the files of a format directory.

- `onnx/`: fp32 with KV cache (optimum, `text-generation-with-past`), for CPU.
- `onnx-fp16/`: fp16 exported on a CUDA device and fused for the CUDA execution provider.

onnxruntime's own graph optimisations run when a session is created (ORT_ENABLE_ALL for the provider it
runs on), so the CPU graphs are shipped unfused. Measured on SmolLM2-135M-Instruct (2 CPU cores, batch 1,
128 tokens): the transformer fusions (optimum ORTOptimizer / the onnxruntime.transformers optimizer:
SkipSimplifiedLayerNormalization, RotaryEmbedding) made fp32 slower (p50 142 vs 118 ms) and 33 MB larger
(cos/sin caches), and an offline ORT_ENABLE_EXTENDED model folded the tied lm_head transpose into a second
113 MB copy (652 MB) for no speed-up.

optimum, onnx, onnxruntime and torch are imported inside the functions that use them: the evaluate step
and the Airflow worker import this package without needing them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tasks.config.export import EXPORT_FORMATS
from tasks.storage import store

ONNX_TASK = "text-generation-with-past"
FP32, INT8, FP16 = EXPORT_FORMATS[:3]
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx_data", ".gguf")
MODEL_FILE = "model.onnx"
# protobuf cannot serialise a message of 2 GiB or more; larger graphs keep their tensors beside them.
EXTERNAL_DATA_BYTES = 1 << 31
# Optimum's optimisation level for the CUDA graph: fusions without O3's approximations (fast GELU).
CUDA_OPTIMIZATION = "O2"


def weights_size(directory: Path) -> int:
    """Bytes of weight files only, so PyTorch and ONNX sizes compare like for like."""
    return sum(
        p.stat().st_size for p in directory.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )


def export_onnx(model_dir: Path, target: Path, *, device: str = "cpu", dtype: str = "fp32") -> None:
    from optimum.exporters.onnx import main_export  # heavy (torch, transformers): only when exporting

    # check_export measures parity against PyTorch itself, with thresholds the user set.
    main_export(
        str(model_dir),
        str(target),
        task=ONNX_TASK,
        library_name="transformers",
        device=device,
        dtype=dtype,
        do_validation=False,
    )


def copy_sidecars(source: Path, target: Path) -> None:
    """Config, generation config and tokenizer, so that a format directory loads on its own."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and path.name != store.MANIFEST:
            shutil.copy2(path, target / path.name)


def save_onnx(model: Any, path: Path) -> None:
    import onnx  # heavy: only when a graph is written

    external = model.ByteSize() >= EXTERNAL_DATA_BYTES
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=f"{path.name}_data",
    )


def cuda_problem() -> str | None:
    """Why an fp16 export for CUDA cannot be built here, or None."""
    import onnxruntime  # heavy: only when fp16 is asked for
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device on this machine"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "this onnxruntime has no CUDA execution provider (install onnxruntime-gpu)"
    return None


def export_fp16(model_dir: Path, target: Path) -> dict[str, Any]:
    """fp16 weights and activations, exported on the GPU (tracing in fp16 on CPU is not supported by
    torch for every op) and fused for the CUDA execution provider by optimum's ORTOptimizer."""
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer  # heavy: only when exporting

    export_onnx(model_dir, target, device="cuda", dtype="fp16")
    config = AutoOptimizationConfig.with_optimization_level(CUDA_OPTIMIZATION, for_gpu=True)
    config.disable_shape_inference = True  # symbolic shape inference fails on the with-past graph
    ORTOptimizer.from_pretrained(target, file_names=[MODEL_FILE]).optimize(
        save_dir=target, optimization_config=config, file_suffix=""
    )
    return {"device": "cuda", "optimization": f"optimum {CUDA_OPTIMIZATION} for CUDAExecutionProvider"}
