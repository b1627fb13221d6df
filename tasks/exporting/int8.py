"""INT8 from the fp32 graph: static (calibrated QDQ) or dynamic (blockwise 8-bit weights,
`tasks.exporting.int8_weights`), and with `int8_mode: auto` both, keeping the one that agrees better with
fp32 on held-out rows.

onnxruntime and transformers are imported inside the functions: only the export needs them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tasks.config.export import ExportConfig
from tasks.exporting.calibration import (
    CalibrationError,
    calibration_reader,
    decoder_feed,
    decoder_inputs,
    load_texts,
    row_text,
    windows,
)
from tasks.exporting.int8_weights import weight_only_int8
from tasks.exporting.onnx_fp import EXTERNAL_DATA_BYTES, MODEL_FILE, copy_sidecars
from tasks.runtime.errors import StepError
from tasks.training.trainer import read_split

log = logging.getLogger("tunerflow.export")


def activation_exclusions(model_path: Path, patterns: list[str]) -> tuple[list[str], list[str]]:
    """MatMuls kept out of static activation quantization: those without a constant weight (attention
    scores and values, the rotary frequencies: two activations, whose int8 ranges wreck positions and
    attention), and those whose name contains a pattern. Returns (all excluded, pattern matches)."""
    import onnx  # heavy: only when quantizing

    graph = onnx.load(model_path, load_external_data=False).graph
    constants = {tensor.name for tensor in graph.initializer}
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    matched = [n.name for n in matmuls if n.input[1] in constants and any(p in n.name for p in patterns)]
    variable = [n.name for n in matmuls if n.input[1] not in constants]
    return variable + matched, matched


def static_qdq(fp32_path: Path, target: Path, reader: Any, config: ExportConfig) -> dict[str, Any]:
    """QDQ static quantization: int8 per-channel weights and activation ranges measured on calibration."""
    # heavy: only when quantizing
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


def greedy_tokens(model_path: Path, feeds: list[dict[str, Any]]) -> list[Any]:
    """The greedy token at every position of each feed (teacher-forced), on CPU."""
    import onnxruntime  # heavy: only when comparing INT8 graphs

    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return [session.run(["logits"], feed)[0].argmax(-1) for feed in feeds]


def agreement(reference: list[Any], tokens: list[Any]) -> float:
    """Share of positions whose greedy token matches the reference's."""
    same = sum(int((got == expected).sum()) for expected, got in zip(reference, tokens, strict=True))
    return round(same / max(sum(int(expected.size) for expected in reference), 1), 6)


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


def _static_int8(
    fp32_dir: Path,
    work: Path,
    config: ExportConfig,
    details: dict[str, Any],
    dataset: dict[str, Any] | None,
    cache_dir: Path | None,
) -> tuple[Path | None, Any, list[str] | None]:
    """Calibrate and build the static graph under `work`, recording how in `details`. Returns its
    directory (None when auto found no calibration data), the tokenizer and the calibration texts."""
    from transformers import AutoTokenizer  # heavy: only when quantizing

    fp32_path = fp32_dir / MODEL_FILE
    tokenizer = AutoTokenizer.from_pretrained(fp32_dir)
    cal = config.calibration
    try:
        loaded = load_texts(cal, dataset=dataset, tokenizer=tokenizer, cache_dir=cache_dir)
    except CalibrationError as error:
        if config.int8_mode == "static":
            raise StepError(f"export: static INT8 needs calibration data: {error}") from None
        log.warning("static INT8 not built, keeping dynamic: %s", error)
        details.update(kept="dynamic", reason=f"static not built: {error}")
        return None, tokenizer, None
    cut = windows(loaded.texts, tokenizer, cal.samples, cal.seq_length, cal.seed)
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
    (work / "static").mkdir()
    static.update(weight_only_int8(qdq, work / "static", config.int8_block_size))
    details["static"] = static
    return work / "static", tokenizer, loaded.texts


def _compare_on_holdout(
    fp32_dir: Path, candidates: dict[str, Path], feeds: list[dict[str, Any]], source: str
) -> dict[str, Any]:
    """Which of static and dynamic to keep, by greedy-token agreement with fp32 on `feeds`."""
    reference = greedy_tokens(fp32_dir / MODEL_FILE, feeds)
    scores = {
        kind: agreement(reference, greedy_tokens(path / MODEL_FILE, feeds))
        for kind, path in candidates.items()
    }
    holdout = {
        "source": source,
        "rows": len(feeds),
        "positions": int(sum(r.size for r in reference)),
        "agreement_with_fp32": scores,
    }
    if feeds:
        kept, reason = choose_int8(scores["static"], scores["dynamic"], len(feeds))
    else:  # every calibration window went to calibration and no validation split was given
        kept, reason = "static", "no held-out rows to compare on; static is kept (int8_mode auto)"
    return {"holdout": holdout, "kept": kept, "reason": reason}


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
    fp32_path = fp32_dir / MODEL_FILE
    details: dict[str, Any] = {"int8_mode": config.int8_mode, "block_size": config.int8_block_size}
    with tempfile.TemporaryDirectory(prefix=".int8-", suffix=".tmp", dir=target.parent) as scratch:
        work = Path(scratch)
        candidates: dict[str, Path] = {}
        if config.int8_mode in ("dynamic", "auto"):
            candidates["dynamic"] = work / "dynamic"
            candidates["dynamic"].mkdir()
            details["dynamic"] = weight_only_int8(fp32_path, candidates["dynamic"], config.int8_block_size)
        if config.int8_mode in ("static", "auto"):
            static, tokenizer, texts = _static_int8(fp32_dir, work, config, details, dataset, cache_dir)
            if static is not None:
                candidates["static"] = static
        if len(candidates) == 2:
            feeds, source = holdout_feeds(fp32_path, tokenizer, config, dataset, texts)
            details.update(_compare_on_holdout(fp32_dir, candidates, feeds, source))
        elif "kept" not in details:
            details.update(kept=next(iter(candidates)), reason=f"int8_mode is {config.int8_mode}")
        log.info("INT8: kept %s (%s)", details["kept"], details["reason"])
        copy_sidecars(fp32_dir, target)
        for path in candidates[details["kept"]].iterdir():
            shutil.move(str(path), target / path.name)
    return details
