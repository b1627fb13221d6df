"""Step: merge the winner and export it to ONNX. `python -m tasks.export --job <json-or-uri>`

Writes under `output`: `merged/` (the merged model and tokenizer in safetensors: what gets promoted), then one
directory per requested format, each loadable by `ORTModelForCausalLM.from_pretrained(dir)` and holding the
tokenizer, config and its own `manifest.json` (files + sha256, written last):

- `onnx/`: fp32 with KV cache (optimum, `text-generation-with-past`), for CPU.
- `onnx-int8/`: 8-bit, for CPU, from the fp32 graph; static (calibrated) or dynamic, see `build_int8`.
- `onnx-fp16/`: fp16 exported on a CUDA device and fused for the CUDA execution provider.

`export_formats` does the ONNX part for any merged model directory (the evaluate step scores a job after
quantization with it), with no store or job-spec assumptions.

Measured on SmolLM2-135M-Instruct (2 CPU cores, batch 1, 128 tokens; PyTorch fp32 538 MB, p50 ~287 ms):
- onnxruntime's own graph optimisations run when a session is created (ORT_ENABLE_ALL for the provider it
  runs on), so the CPU graphs are shipped unfused: the transformer fusions (optimum ORTOptimizer / the
  onnxruntime.transformers optimizer: SkipSimplifiedLayerNormalization, RotaryEmbedding) made fp32 slower
  (p50 142 vs 118 ms) and 33 MB larger (cos/sin caches), and an offline ORT_ENABLE_EXTENDED model folded
  the tied lm_head transpose into a second 113 MB copy (652 MB) for no speed-up.
- onnxruntime's per-tensor dynamic quantization (MatMulInteger) cost accuracy unless the MLP down_proj
  stayed fp32 (greedy agreement with PyTorch on prompt positions 0.82), which left 0.56x the size; static
  QDQ with calibrated per-tensor activation ranges did worse (0.75 minmax, 0.70 percentile; on the demo's
  held-out rows 0.83 against 0.92 for the blockwise graph below).
- Blockwise 8-bit weights (MatMulNBits, bits=8, a scale and zero point per 64 weights) with int8 compute
  (accuracy_level=4: activations quantized per block at run time) on every MatMul, down_proj and lm_head
  included, plus the tied embedding stored once in 8 bits (GatherBlockQuantized over lm_head's bytes):
  0.27x the size, p50 0.38x PyTorch, ROUGE-L on the fine-tuned demo +0.008. 32-weight blocks: 0.29x and
  about 10% slower for no measurable accuracy gain. That is the `dynamic` INT8 here.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tasks.config.catalog import CatalogEntry, ModelSource
from tasks.config.export import EXPORT_FORMATS, ExportConfig
from tasks.runtime.errors import StepError
from tasks.storage import store

log = logging.getLogger("tunerflow.export")

ONNX_TASK = "text-generation-with-past"
FP32, INT8, FP16 = "onnx", "onnx-int8", "onnx-fp16"
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx_data")
MODEL_FILE = "model.onnx"
# protobuf cannot serialise a message of 2 GiB or more; larger graphs keep their tensors beside them.
EXTERNAL_DATA_BYTES = 1 << 31
# MatMulNBits' int8 compute: activations quantized to int8 per block at run time (about 2x faster on AVX512
# VNNI than dequantizing the weights to fp32, accuracy_level 0, with the same agreement).
INT8_ACCURACY_LEVEL = 4
# Optimum's optimisation level for the CUDA graph: fusions without O3's approximations (fast GELU).
CUDA_OPTIMIZATION = "O2"


def weights_size(directory: Path) -> int:
    """Bytes of weight files only, so PyTorch and ONNX sizes compare like for like."""
    return sum(
        p.stat().st_size for p in directory.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )


def merge(job: dict[str, Any], target: Path) -> None:
    """Save the model to ship: the base with the LoRA adapter merged in, or the fully fine-tuned model."""
    from tasks.training.base_models import load_model, load_tokenizer

    entry = CatalogEntry.model_validate(job["model"])
    if job.get("model_uri"):
        # The fine-tuned weights replace the base; the entry still supplies the tokenizer overrides.
        entry = entry.model_copy(update={"source": ModelSource(path=job["model_uri"])})
    adapter = job.get("adapter_uri")
    adapter_dir = str(store.fetch(adapter)) if adapter else None
    model = load_model(entry, job["store_root"], adapter_dir=adapter_dir)
    tokenizer = load_tokenizer(entry, job["store_root"])
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


# ------------------------------------------------------------------------------------------------- fp32


def export_onnx(model_dir: Path, target: Path, *, device: str = "cpu", dtype: str = "fp32") -> None:
    from optimum.exporters.onnx import main_export

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
    import onnx

    external = model.ByteSize() >= EXTERNAL_DATA_BYTES
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=f"{path.name}_data",
    )


# ------------------------------------------------------------------------------------------------- fp16


def cuda_problem() -> str | None:
    """Why an fp16 export for CUDA cannot be built here, or None."""
    import onnxruntime
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device on this machine"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "this onnxruntime has no CUDA execution provider (install onnxruntime-gpu)"
    return None


def export_fp16(model_dir: Path, target: Path) -> dict[str, Any]:
    """fp16 weights and activations, exported on the GPU (tracing in fp16 on CPU is not supported by
    torch for every op) and fused for the CUDA execution provider by optimum's ORTOptimizer."""
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    export_onnx(model_dir, target, device="cuda", dtype="fp16")
    config = AutoOptimizationConfig.with_optimization_level(CUDA_OPTIMIZATION, for_gpu=True)
    config.disable_shape_inference = True  # symbolic shape inference fails on the with-past graph
    ORTOptimizer.from_pretrained(target, file_names=[MODEL_FILE]).optimize(
        save_dir=target, optimization_config=config, file_suffix=""
    )
    return {"device": "cuda", "optimization": f"optimum {CUDA_OPTIMIZATION} for CUDAExecutionProvider"}


# ------------------------------------------------------------------------------------------------- int8


def _initializers(graph: Any) -> dict[str, Any]:
    return {tensor.name: tensor for tensor in graph.initializer}


def _consumers(graph: Any, name: str) -> list[Any]:
    return [node for node in graph.node if name in node.input]


def embedding_gather(graph: Any) -> Any | None:
    """The token embedding lookup: the Gather over the largest 2-D initializer."""
    inits = _initializers(graph)
    gathers = [
        node
        for node in graph.node
        if node.op_type == "Gather" and node.input[0] in inits and len(inits[node.input[0]].dims) == 2
    ]
    return max(gathers, key=lambda n: inits[n.input[0]].dims[0], default=None)


def untie_lm_head(graph: Any, table: str) -> str | None:
    """Give a tied lm_head (MatMul by Transpose(embedding), as optimum exports tied weights) its own
    transposed initializer so the weight quantizer sees a constant; returns the lm_head's output name."""
    import numpy as np
    from onnx import numpy_helper

    for node in list(graph.node):
        if node.op_type != "Transpose" or node.input[0] != table:
            continue
        users = _consumers(graph, node.output[0])
        if len(users) == 1 and users[0].op_type == "MatMul" and users[0].input[1] == node.output[0]:
            weight = numpy_helper.to_array(_initializers(graph)[table])
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), node.output[0]))
            graph.node.remove(node)
            return users[0].output[0]
    return None


def _weight_only_config(block_size: int) -> Any:
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig
    except ModuleNotFoundError as error:  # onnxruntime imports onnx_ir there without declaring it
        raise StepError(
            f"export: INT8 needs the {error.name} package for onnxruntime's MatMulNBits quantizer; "
            "pip install 'tunerflow[export]' (or onnx-ir)"
        ) from None

    return DefaultWeightOnlyQuantConfig(
        block_size=block_size,
        is_symmetric=False,
        accuracy_level=INT8_ACCURACY_LEVEL,
        bits=8,
        op_types_to_quantize=("MatMul",),
    )


def _gather_block_quantized(
    graph: Any, gather: Any, data: str, scales: str, zero_points: str, shape: tuple[int, int, int]
) -> None:
    """Replace the fp32 lookup by GatherBlockQuantized over [vocab, blocks, block] uint8 rows: the layout
    MatMulNBits stores lm_head in, so a tied embedding is kept once."""
    import numpy as np
    from onnx import helper, numpy_helper

    vocab, blocks, block = shape
    prefix = f"{gather.name or 'embedding'}/int8"
    block_shape = numpy_helper.from_array(
        np.array([vocab, blocks, 1], dtype=np.int64), f"{prefix}/scale_shape"
    )
    out_shape = numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), f"{prefix}/out_shape")
    graph.initializer.extend([block_shape, out_shape])
    nodes = [
        helper.make_node(
            "Reshape", [scales, block_shape.name], [f"{prefix}/scales"], name=f"{prefix}/ScalesReshape"
        ),
        helper.make_node(
            "Reshape",
            [zero_points, block_shape.name],
            [f"{prefix}/zero_points"],
            name=f"{prefix}/ZeroReshape",
        ),
        helper.make_node(
            "GatherBlockQuantized",
            [data, gather.input[1], f"{prefix}/scales", f"{prefix}/zero_points"],
            [f"{prefix}/blocks"],
            name=f"{prefix}/GatherBlockQuantized",
            domain="com.microsoft",
            bits=8,
            block_size=block,
            gather_axis=0,
            quantize_axis=2,
        ),
        helper.make_node(
            "Reshape", [f"{prefix}/blocks", out_shape.name], [gather.output[0]], name=f"{prefix}/Out"
        ),
    ]
    position = list(graph.node).index(gather)
    graph.node.remove(gather)
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)


def quantize_embedding(graph: Any, gather: Any, lm_head_output: str | None, block_size: int) -> str:
    """Store the embedding table in 8 bits, sharing lm_head's quantized weight when they are tied."""
    from onnx import numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantizer

    inits = _initializers(graph)
    table = gather.input[0]
    vocab, hidden = (int(d) for d in inits[table].dims)
    if hidden % block_size:
        return f"fp32 (hidden size {hidden} is not a multiple of int8_block_size {block_size})"
    shape = (vocab, hidden // block_size, block_size)
    lm_head = next((n for n in graph.node if lm_head_output in n.output), None) if lm_head_output else None
    if lm_head is not None and lm_head.op_type == "MatMulNBits" and len(lm_head.input) > 3:
        data, scales, zero_points = lm_head.input[1], lm_head.input[2], lm_head.input[3]
        shared = tuple(int(d) for d in inits[data].dims) == shape
    else:
        shared = False
    if not shared:
        packed, scale, zero = DefaultWeightOnlyQuantizer(_weight_only_config(block_size)).qbits_block_quant(
            numpy_helper.to_array(inits[table]).T.copy()
        )
        data, scales, zero_points = f"{table}_Q8", f"{table}_Q8_scales", f"{table}_Q8_zero_points"
        graph.initializer.extend(
            [
                numpy_helper.from_array(packed.reshape(shape), data),
                numpy_helper.from_array(scale.reshape(vocab, -1), scales),
                numpy_helper.from_array(zero.reshape(vocab, -1), zero_points),
            ]
        )
    _gather_block_quantized(graph, gather, data, scales, zero_points, shape)
    if not _consumers(graph, table):
        graph.initializer.remove(inits[table])
    return "int8, shared with lm_head" if shared else "int8"


def weight_only_int8(source: Path, target: Path, block_size: int) -> dict[str, Any]:
    """Every MatMul that still has a constant fp32 weight (all of them for dynamic; the ones kept out of
    static activation quantization otherwise, and lm_head) to MatMulNBits with 8-bit blockwise weights,
    and the embedding to 8 bits."""
    import onnx

    config = _weight_only_config(block_size)  # first: it says what to install when a package is missing
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # It logs a line per node at INFO (thousands for an LLM), which buries the step's own log.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    model = onnx.load(source)
    gather = embedding_gather(model.graph)
    lm_head_output = untie_lm_head(model.graph, gather.input[0]) if gather is not None else None
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    model = quantizer.model.model
    gather = embedding_gather(model.graph)
    embedding = (
        quantize_embedding(model.graph, gather, lm_head_output, block_size) if gather else "none found"
    )
    save_onnx(model, target / MODEL_FILE)
    return {
        "weight_only_matmuls": sum(n.op_type == "MatMulNBits" for n in model.graph.node),
        "embedding": embedding,
    }


def activation_exclusions(model_path: Path, patterns: list[str]) -> tuple[list[str], list[str]]:
    """MatMuls kept out of static activation quantization: those without a constant weight (attention
    scores and values, the rotary frequencies: two activations, whose int8 ranges wreck positions and
    attention), and those whose name contains a pattern. Returns (all excluded, pattern matches)."""
    import onnx

    graph = onnx.load(model_path, load_external_data=False).graph
    constants = {tensor.name for tensor in graph.initializer}
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    matched = [n.name for n in matmuls if n.input[1] in constants and any(p in n.name for p in patterns)]
    variable = [n.name for n in matmuls if n.input[1] not in constants]
    return variable + matched, matched


def static_qdq(fp32_path: Path, target: Path, reader: Any, config: ExportConfig) -> dict[str, Any]:
    """QDQ static quantization: int8 per-channel weights and activation ranges measured on calibration."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    excluded, matched = activation_exclusions(fp32_path, config.int8_exclude)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    quantize_static(
        fp32_path,
        target,
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=excluded,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=methods[config.calibration.method],
        use_external_data_format=fp32_path.stat().st_size >= EXTERNAL_DATA_BYTES,
    )
    return {"excluded_from_activation_quantization": matched}


def holdout_feeds(
    fp32_path: Path,
    tokenizer: Any,
    config: ExportConfig,
    dataset: dict[str, Any] | None,
    calibration_texts: list[str] | None,
) -> tuple[list[dict[str, Any]], str]:
    """Batch-1 inputs that calibration did not see: the prepared dataset's validation rows, else the
    calibration texts past the windows calibration used."""
    from tasks.exporting.calibration import decoder_feed, decoder_inputs, row_text, windows
    from tasks.training.trainer import read_split

    inputs = decoder_inputs(fp32_path)
    seq_length = config.calibration.seq_length
    if dataset and dataset.get("counts", {}).get("validation"):
        rows = read_split(dataset["uri"], "validation")[: config.holdout_rows]
        ids = [
            tokenizer(row_text(row, tokenizer), add_special_tokens=False)["input_ids"][:seq_length]
            for row in rows
        ]
        source = f"{dataset.get('name', 'dataset')} validation split"
    elif calibration_texts:
        cal = config.calibration
        ids = windows(calibration_texts, tokenizer, cal.samples + config.holdout_rows, seq_length, cal.seed)
        ids = ids[cal.samples :]
        source = "calibration texts after the calibration windows"
    else:
        return [], "none"
    return [decoder_feed(inputs, row) for row in ids if row], source


def agreement(reference: list[Any], model_path: Path, feeds: list[dict[str, Any]]) -> float:
    """Share of positions whose greedy token matches the fp32 graph's (teacher-forced)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    same = total = 0
    for expected, feed in zip(reference, feeds, strict=True):
        tokens = session.run(["logits"], feed)[0].argmax(-1)
        same += int((tokens == expected).sum())
        total += int(expected.size)
    return round(same / max(total, 1), 6)


def choose_int8(static: float, dynamic: float, rows: int) -> tuple[str, str]:
    """Static unless it agrees less with fp32 than dynamic: calibration is the point of static, and a tie
    keeps the graph whose activation scales are fixed (no per-call range search)."""
    scores = (
        f"greedy-token agreement with fp32 on {rows} held-out rows: "
        f"static {static:.4f}, dynamic {dynamic:.4f}"
    )
    if static >= dynamic:
        return "static", f"{scores}; static is not worse, so it is kept"
    return "dynamic", f"{scores}; static is worse: fell back to dynamic"


def build_int8(
    fp32_dir: Path,
    target: Path,
    config: ExportConfig,
    *,
    dataset: dict[str, Any] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """INT8 from the fp32 graph. dynamic: 8-bit blockwise weights everywhere, activations quantized at run
    time. static: QDQ with calibrated activation ranges on the MatMuls not excluded, then the dynamic
    treatment for the rest (excluded MatMuls, lm_head, embedding), so both are about the same size.
    auto: build both and keep static unless it agrees less with fp32 on held-out rows."""
    import onnxruntime
    from transformers import AutoTokenizer

    from tasks.exporting.calibration import CalibrationError, calibration_reader, load_texts, windows

    fp32_path = fp32_dir / MODEL_FILE
    block = config.int8_block_size
    details: dict[str, Any] = {"int8_mode": config.int8_mode, "block_size": block}
    with tempfile.TemporaryDirectory(prefix=".int8-", suffix=".tmp", dir=target.parent) as scratch:
        work = Path(scratch)
        candidates: dict[str, Path] = {}
        if config.int8_mode in ("dynamic", "auto"):
            candidates["dynamic"] = work / "dynamic"
            candidates["dynamic"].mkdir()
            details["dynamic"] = weight_only_int8(fp32_path, candidates["dynamic"], block)
        texts = None
        if config.int8_mode in ("static", "auto"):
            tokenizer = AutoTokenizer.from_pretrained(fp32_dir)
            cal = config.calibration
            try:
                loaded = load_texts(cal, dataset=dataset, tokenizer=tokenizer, cache_dir=cache_dir)
            except CalibrationError as error:
                if config.int8_mode == "static":
                    raise StepError(f"export: static INT8 needs calibration data: {error}") from None
                log.warning("static INT8 not built, keeping dynamic: %s", error)
                details.update(kept="dynamic", reason=f"static not built: {error}")
                loaded = None
            if loaded is not None:
                texts = loaded.texts
                cut = windows(texts, tokenizer, cal.samples, cal.seq_length, cal.seed)
                details["calibration"] = {
                    **loaded.describe(),
                    "windows": len(cut),
                    "seq_length": cal.seq_length,
                    "seed": cal.seed,
                    "method": cal.method,
                }
                log.info("static INT8: calibrating on %d windows of %d tokens", len(cut), cal.seq_length)
                qdq = work / "static-qdq.onnx"
                static = static_qdq(fp32_path, qdq, calibration_reader(fp32_path, cut), config)
                candidates["static"] = work / "static"
                candidates["static"].mkdir()
                static.update(weight_only_int8(qdq, candidates["static"], block))
                details["static"] = static
        if len(candidates) == 2:
            feeds, source = holdout_feeds(fp32_path, tokenizer, config, dataset, texts)
            reference_session = onnxruntime.InferenceSession(
                str(fp32_path), providers=["CPUExecutionProvider"]
            )
            reference = [reference_session.run(["logits"], feed)[0].argmax(-1) for feed in feeds]
            del reference_session
            scores = {
                kind: agreement(reference, path / MODEL_FILE, feeds) for kind, path in candidates.items()
            }
            details["holdout"] = {
                "source": source,
                "rows": len(feeds),
                "positions": int(sum(r.size for r in reference)),
                "agreement_with_fp32": scores,
            }
            if feeds:
                kept, reason = choose_int8(scores["static"], scores["dynamic"], len(feeds))
            else:  # every calibration window went to calibration and no validation split was given
                kept, reason = "static", "no held-out rows to compare on; static is kept (int8_mode auto)"
            details.update(kept=kept, reason=reason)
        elif "kept" not in details:
            details.update(kept=next(iter(candidates)), reason=f"int8_mode is {config.int8_mode}")
        log.info("INT8: kept %s (%s)", details["kept"], details["reason"])
        copy_sidecars(fp32_dir, target)
        for path in candidates[details["kept"]].iterdir():
            shutil.move(str(path), target / path.name)
    return details


# ------------------------------------------------------------------------------------------------ steps


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
) -> dict[str, Any]:
    """Export a merged Hugging Face model directory to `target_root/<format>/` for each format; returns
    {"formats": {format: {"path", "size_bytes", ...details}}}. A format directory whose manifest is
    written is reused as it is. `dataset` (a prepared dataset: {"name", "uri", "counts"}) gives static INT8
    its `experiment` calibration rows and the held-out rows of the auto choice."""
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
    return {"formats": {fmt: {"path": str(target_root / fmt), **done[fmt]} for fmt in formats}}


def export(job: dict[str, Any]) -> dict[str, Any]:
    """Merge the winner, export it to the requested ONNX formats and report where, how big and how."""
    formats = list(job.get("formats") or [])
    _check_formats(formats)
    if job.get("adapter_uri") and job.get("model_uri"):
        raise StepError("export: give either adapter_uri (LoRA) or model_uri (full fine-tune), not both")
    output = job["output"]
    root = store.local_dir(output)
    merged = root / "merged"
    merge(job, merged)
    result: dict[str, Any] = {
        "merged_uri": store.join(output, "merged"),
        "pytorch_size_bytes": weights_size(merged),
        "formats": {},
    }
    if not formats:
        return result
    exported = export_formats(
        merged, root, formats, job.get("export_config") or {}, dataset=job.get("dataset")
    )
    for fmt, details in exported["formats"].items():
        result["formats"][fmt] = {
            "uri": store.join(output, fmt),
            **{key: value for key, value in details.items() if key != "path"},
        }
    return result
