"""How the winner is exported (ONNX, GGUF) and gated against PyTorch, and the calibration data of static
INT8 quantization."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.config.base import AddedLaterAsGiven, StrictModel

EXPORT_FORMATS = ("onnx", "onnx-int8", "onnx-fp16", "gguf")
GGUF_TYPES = ("f16", "q8_0")
INT8_MODES = ("auto", "static", "dynamic")
CALIBRATION_FORMATS = ("auto", "c4", "ceval")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class CalibrationConfig(StrictModel):
    """Text that static INT8 quantization measures activation ranges on."""

    dataset: str = Field(
        "experiment",
        min_length=1,
        description="`experiment` (the prepared training split of the run, rendered with the chat template: "
        "works offline), `c4` (allenai/c4, English, one validation shard) or `ceval` (ceval/ceval-exam, "
        "Chinese, the val split of every subject) from the Hugging Face Hub where one is reachable, or a "
        "local path, directory, glob, `s3://` URI or `hf:<name or save_to_disk dir>[:<config>][@<split>]` "
        "holding files in one of those published formats: C4 gzip JSON lines (`c4-*.json.gz`, or plain "
        ".json/.jsonl, with `text`), C-Eval per-subject CSV (`{dev,val,test}/<subject>_<split>.csv` with "
        "id,question,A,B,C,D[,answer,explanation]).",
    )
    format: Literal[CALIBRATION_FORMATS] = Field(  # type: ignore[valid-type]
        "auto",
        description="Row format of a path/URI dataset: c4 (a `text` column) or ceval (question and options "
        "A-D); `auto` tells them apart by their columns.",
    )
    subjects: list[str] = Field(
        default_factory=list,
        description="C-Eval subjects to read (e.g. computer_network); empty reads every subject found.",
    )
    samples: int = Field(128, ge=1, le=4096, description="Calibration sequences fed to the model.")
    seq_length: int = Field(
        256, ge=8, le=8192, description="Tokens per calibration sequence (texts are joined, then cut)."
    )
    seed: int = Field(0, ge=0, description="Seed of the shuffle that picks the calibration texts.")
    method: Literal[CALIBRATION_METHODS] = Field(  # type: ignore[valid-type]
        "minmax",
        description="How activation ranges are set from the calibration data: minmax, entropy or "
        "percentile (onnxruntime's calibrators). entropy and percentile hold every calibration activation in "
        "memory (for a 135M model about 200 MB per 256-token sample): use them with few samples.",
    )


class ExportConfig(StrictModel, AddedLaterAsGiven):
    """How the winner is exported. `onnx-fp16` needs a CUDA device where the export step runs; that can
    only be known there (the worker validating the conf may not be the GPU pod), so the export step refuses
    it with a message when no CUDA device is present."""

    # Settings added after evaluate specs were first stored with this section (see AddedLaterAsGiven).
    ADDED_LATER = frozenset({"gguf_types", "gguf_f16_max_logit_diff", "gguf_min_greedy_agreement"})

    enabled: bool = Field(True, description="Export the winner to ONNX.")
    formats: list[Literal[EXPORT_FORMATS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["onnx", "onnx-int8"],
        description="onnx (fp32 with KV cache, for CPU), onnx-int8 (8-bit weights and activations, for CPU; "
        "see int8_mode), onnx-fp16 (fp16 exported on a CUDA device, for the CUDA execution provider) and "
        "gguf (GGUF files for llama.cpp and an Ollama Modelfile; llama-family models only; see gguf_types).",
    )
    gguf_types: list[Literal[GGUF_TYPES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["f16", "q8_0"],
        min_length=1,
        description="GGUF files written when gguf is in formats: f16 (16-bit weights) and/or q8_0 (8-bit "
        "blocks of 32 weights, llama.cpp's Q8_0). The Ollama Modelfile uses q8_0 when it is written.",
    )
    int8_mode: Literal[INT8_MODES] = Field(  # type: ignore[valid-type]
        "auto",
        description="static: activation ranges calibrated on `calibration`; dynamic: activations quantized "
        "per block at run time; auto: build both and keep static unless it agrees less with fp32 than "
        "dynamic on held-out rows (the choice and the numbers are recorded in the export result).",
    )
    int8_block_size: Literal[16, 32, 64, 128] = Field(
        64,
        description="Weights per INT8 scale along the input dimension (smaller: more accurate, larger and "
        "slower). The embedding is stored in 8 bits only when the hidden size is a multiple of it.",
    )
    int8_exclude: list[str] = Field(
        default_factory=lambda: ["down_proj"],
        description="Node-name substrings kept out of static activation quantization (their weights are "
        "still 8-bit): the MLP down projections see the activation outliers of decoder LLMs.",
    )
    holdout_rows: int = Field(
        32, ge=1, le=1024, description="Held-out rows on which auto compares static with dynamic INT8."
    )
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="Calibration data for static INT8."
    )
    max_logit_diff: float = Field(
        1e-2, gt=0, description="Largest allowed |logit| difference of fp32 ONNX against PyTorch."
    )
    fp16_max_logit_diff: float = Field(
        0.5, gt=0, description="Largest allowed |logit| difference of fp16 ONNX against fp32 PyTorch."
    )
    min_next_token_agreement: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Least share of fixed prompts whose greedy next token matches PyTorch (fp32 and fp16).",
    )
    int8_min_agreement: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Least share of fixed-prompt positions (teacher-forced) whose greedy token in INT8 "
        "matches PyTorch: catches an INT8 export of the wrong or broken weights that the metric alone could "
        "miss.",
    )
    gguf_f16_max_logit_diff: float = Field(
        0.1,
        gt=0,
        description="Largest allowed |logit| difference of the f16 GGUF file (loaded back with transformers' "
        "GGUF loader) against PyTorch fp32.",
    )
    gguf_min_greedy_agreement: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Least share of greedy-generated tokens (16 per fixed prompt, compared position by "
        "position) that a GGUF file (f16 and q8_0) produces identically to PyTorch. One early divergence "
        "costs the rest of that prompt's tokens, hence below 1 for q8_0.",
    )
    max_metric_drop: float = Field(
        0.05,
        ge=0,
        description="Largest allowed drop (absolute) of scoring.primary on the test split, ONNX against "
        "the PyTorch winner (a rise, for lower-is-better metrics); gated for every format. When primary is a "
        "loss metric (eval_loss, perplexity), the first text metric in scoring.metrics.",
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ExportConfig:
        repeated = sorted({fmt for fmt in self.formats if self.formats.count(fmt) > 1})
        if repeated:
            raise ValueError(f"export.formats: list each format once; repeated: {', '.join(repeated)}")
        if len(set(self.gguf_types)) != len(self.gguf_types):
            raise ValueError("export.gguf_types: list each GGUF type once")
        return self
