"""Calibration text for static INT8: C4 (English) and C-Eval (Chinese) in their published formats, or the
run's own training rows, cut into fixed-length token windows and fed to an ONNX decoder.

- C4 (allenai/c4): gzip JSON lines `en/c4-{train,validation}.NNNNN-of-NNNNN.json.gz`, one document per line
  with `text`, `timestamp`, `url`. Plain `.json` / `.jsonl` files with the same rows are read too.
- C-Eval (ceval/ceval-exam): per-subject CSV files `{dev,val,test}/<subject>_<split>.csv` with
  `id,question,A,B,C,D[,answer,explanation]`; the text of a row is its question followed by its options.

Where they come from: a local file, directory or glob, `s3://` (downloaded and cached by tasks.data.sources),
`hf:` (the `datasets` library: a hub name where a hub is reachable, or a `save_to_disk` directory), the
short names `c4` / `ceval` (the hub), or `experiment` (the run's prepared training split).

Windows are cut from the texts in a seeded shuffled order, joined with the end-of-text token, so that a
calibration run is the same every time and every window has exactly `seq_length` tokens (onnxruntime's
histogram calibrators stack the collected activations and need equal shapes).
"""

from __future__ import annotations

import glob
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.config.export import CalibrationConfig
from tasks.data.parts import cache_dir as default_cache_dir
from tasks.data.sources import SourceError, open_source
from tasks.exporting.calibration_files import MAX_TEXTS, CalibrationError, read_records
from tasks.storage import store
from tasks.training.trainer import read_split

log = logging.getLogger("tunerflow.calibration")

C4_HUB = "allenai/c4"
# One validation shard (~40k documents) is ample for calibration; the full `en` config is 300 GB.
C4_HUB_FILES = "en/c4-validation.00000-of-00008.json.gz"
CEVAL_HUB = "ceval/ceval-exam"
CEVAL_HUB_SPLIT = "val"
SUFFIXES = (".json.gz", ".jsonl.gz", ".jsonl", ".json", ".csv", ".parquet")
CEVAL_OPTIONS = ("A", "B", "C", "D")


@dataclass
class CalibrationTexts:
    texts: list[str]
    source: str
    format: str
    files: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "files": self.files[:20],
            "texts": len(self.texts),
        }


# ------------------------------------------------------------------------------------------ row formats


def detect_format(record: dict[str, Any]) -> str | None:
    if "question" in record and all(option in record for option in CEVAL_OPTIONS):
        return "ceval"
    if isinstance(record.get("text"), str):
        return "c4"
    return None


def ceval_text(record: dict[str, Any]) -> str:
    options = "\n".join(f"{label}. {str(record[label]).strip()}" for label in CEVAL_OPTIONS)
    return f"{str(record['question']).strip()}\n{options}"


def record_text(record: dict[str, Any], fmt: str) -> str:
    return ceval_text(record) if fmt == "ceval" else str(record["text"])


def texts_from_files(
    files: list[Path], labels: list[str], fmt: str, subjects: list[str]
) -> tuple[list[str], str]:
    """Texts of every row, in file order, and the format they were read as."""
    texts: list[str] = []
    found = fmt
    for path, label in zip(files, labels, strict=True):
        if subjects and path.name.lower().endswith(".csv"):
            subject = re.sub(r"_(dev|val|test)$", "", path.name[: -len(".csv")])
            if subject not in subjects:
                continue
        for number, record in enumerate(read_records(path), start=1):
            if not isinstance(record, dict):
                raise CalibrationError(f"{label}:{number}: a row must be an object with columns")
            kind = detect_format(record) if found == "auto" else found
            if kind is None:
                raise CalibrationError(
                    f"{label}:{number}: neither C4 (a `text` column) nor C-Eval (question, A, B, C, D) row; "
                    f"found columns {sorted(record)[:10]}"
                )
            if kind == "ceval" and not ("question" in record and all(o in record for o in CEVAL_OPTIONS)):
                raise CalibrationError(
                    f"{label}:{number}: a C-Eval row needs question, A, B, C and D columns"
                )
            if kind == "c4" and not isinstance(record.get("text"), str):
                raise CalibrationError(f"{label}:{number}: a C4 row needs a `text` string")
            found = kind
            text = record_text(record, kind)
            if text.strip():
                texts.append(text)
            if len(texts) >= MAX_TEXTS:
                return texts, found
    return texts, found


# ------------------------------------------------------------------------------------------------ sources


def _local_files(pattern: str) -> list[Path]:
    path = store.local_path(pattern)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES))
    return sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())


def _is_local(setting: str) -> bool:
    try:
        return store.is_local(setting)
    except store.UnsupportedScheme:
        raise CalibrationError(
            f"calibration.dataset '{setting}': unsupported scheme; use experiment, c4, ceval, a local path, "
            "file://, s3:// or hf:"
        ) from None


def _labels(files: list[Path], base: str) -> list[str]:
    root = Path(base)
    return [p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name for p in files]


def _hub_error(what: str, setting: str, error: Exception, files_hint: str) -> CalibrationError:
    cause = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    return CalibrationError(
        f"calibration.dataset '{setting}': could not load {what} from the Hugging Face Hub ({cause}). "
        f"Without hub access, download {files_hint} and set calibration.dataset to their local path or "
        "s3:// URI"
    )


def _c4_from_hub(setting: str) -> CalibrationTexts:
    import datasets

    try:
        rows = datasets.load_dataset(C4_HUB, data_files=C4_HUB_FILES, split="train")
    except Exception as error:  # the hub client, fsspec and the builders raise many unrelated types
        raise _hub_error(C4_HUB, setting, error, f"a C4 shard (e.g. {C4_HUB_FILES})") from None
    texts = [str(text) for text in rows.select(range(min(MAX_TEXTS, len(rows))))["text"]]
    return CalibrationTexts(texts, f"hf:{C4_HUB}/{C4_HUB_FILES}", "c4", [C4_HUB_FILES])


def _ceval_from_hub(setting: str, subjects: list[str], split: str) -> CalibrationTexts:
    import datasets

    try:
        names = subjects or sorted(datasets.get_dataset_config_names(CEVAL_HUB))
        texts: list[str] = []
        for subject in names:
            rows = datasets.load_dataset(CEVAL_HUB, name=subject, split=split)
            texts += [ceval_text(row) for row in rows]
    except Exception as error:
        raise _hub_error(
            CEVAL_HUB, setting, error, "the C-Eval CSV files ({dev,val,test}/<subject>_<split>.csv)"
        ) from None
    return CalibrationTexts(
        texts[:MAX_TEXTS], f"hf:{CEVAL_HUB}@{split}", "ceval", [f"{s}@{split}" for s in names]
    )


def _from_source(setting: str, config: CalibrationConfig, cache_dir: Path) -> CalibrationTexts:
    """s3:// and hf: URIs through tasks.data.sources (download, cache, hub or save_to_disk directory)."""

    # A remote prefix ending in '/' names every object below it (local directories are walked instead).
    uri = setting + "*" if setting.endswith("/") and not setting.startswith("hf:") else setting
    try:
        source = open_source(uri, cache_dir=cache_dir)
    except SourceError as error:
        raise CalibrationError(f"calibration.dataset: {error}") from None
    texts, fmt = texts_from_files(source.files, source.labels, config.format, config.subjects)
    return CalibrationTexts(texts, setting, fmt, source.labels)


def _from_experiment(dataset: dict[str, Any] | None, tokenizer: Any) -> CalibrationTexts:

    if not dataset or not dataset.get("uri"):
        raise CalibrationError(
            "calibration.dataset 'experiment': no prepared dataset was given to calibrate on; "
            "set calibration.dataset to c4, ceval or a path in one of their formats"
        )
    split = "train" if dataset.get("counts", {}).get("train", 1) else "validation"
    rows = read_split(dataset["uri"], split)
    return CalibrationTexts(
        [row_text(row, tokenizer) for row in rows[:MAX_TEXTS]],
        f"{dataset.get('name', 'dataset')}@{split}",
        "chat",
    )


def _turns(value: Any, role: str) -> list[dict[str, Any]]:
    """Messages as they are; a plain string (a row prepared as text) as one message of `role`."""
    return value if isinstance(value, list) else [{"role": role, "content": str(value)}]


def row_text(row: dict[str, Any], tokenizer: Any) -> str:
    """A prepared row as the model sees it: chat rows through the chat template, text rows as they are.
    Preference pairs and KTO's unpaired rows are their prompt followed by the chosen answer (or the one
    answer): a conversation like any chat row's."""
    messages = row.get("messages")
    if not messages and "prompt" in row:
        answer = row.get("chosen", row.get("completion", ""))
        messages = _turns(row["prompt"], "user") + _turns(answer, "assistant")
    if messages and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    if messages:
        return "\n".join(str(message["content"]) for message in messages)
    return str(row.get("text", ""))


def load_texts(
    config: CalibrationConfig,
    *,
    dataset: dict[str, Any] | None = None,
    tokenizer: Any = None,
    cache_dir: Path | None = None,
) -> CalibrationTexts:
    """The calibration texts `config.dataset` names, in file order (windows() shuffles them)."""

    setting = config.dataset
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if setting == "experiment":
        loaded = _from_experiment(dataset, tokenizer)
    elif setting == "c4" or setting.split("@")[0] == f"hf:{C4_HUB}":
        loaded = _c4_from_hub(setting)
    elif setting == "ceval" or setting.startswith(f"hf:{CEVAL_HUB}"):
        spec = setting.removeprefix(f"hf:{CEVAL_HUB}")
        spec, _, split = spec.partition("@")
        subject = spec.removeprefix(":")
        loaded = _ceval_from_hub(setting, [subject] if subject else config.subjects, split or CEVAL_HUB_SPLIT)
    elif setting.startswith("hf:") or not _is_local(setting):
        loaded = _from_source(setting, config, cache)
    else:
        files = _local_files(setting)
        if not files:
            raise CalibrationError(
                f"calibration.dataset '{setting}': no file found; give a C4 .json.gz/.jsonl file, a C-Eval "
                "directory of <subject>_<split>.csv files, or a glob over such files"
            )
        base = setting if Path(setting).is_dir() else str(Path(setting).parent)
        texts, fmt = texts_from_files(files, _labels(files, base), config.format, config.subjects)
        loaded = CalibrationTexts(texts, setting, fmt, _labels(files, base))
    if not loaded.texts:
        raise CalibrationError(
            f"calibration.dataset '{setting}': no text found"
            + (f" for subjects {config.subjects}" if config.subjects else "")
            + "; check the files and calibration.format"
        )
    log.info("calibration: %d texts (%s) from %s", len(loaded.texts), loaded.format, loaded.source)
    return loaded


# ---------------------------------------------------------------------------------------- token windows


def windows(texts: list[str], tokenizer: Any, count: int, seq_length: int, seed: int) -> list[list[int]]:
    """`count` windows of exactly `seq_length` token ids (fewer when the texts run out; one shorter window
    when they hold fewer than `seq_length` tokens), from the texts in a seeded shuffled order."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    cut: list[list[int]] = []
    for index in order:
        stream += tokenizer(texts[index], add_special_tokens=False)["input_ids"] + separator
        while len(stream) >= seq_length and len(cut) < count:
            cut.append(stream[:seq_length])
            stream = stream[seq_length:]
        if len(cut) >= count:
            break
    if not cut and stream:
        cut.append(stream)
    if len(cut) < count:
        log.warning(
            "calibration: the texts gave %d windows of %d tokens, not %d", len(cut), seq_length, count
        )
    return cut


# ------------------------------------------------------------------------------------------ model feeds


@dataclass(frozen=True)
class DecoderInput:
    name: str
    dtype: str
    dims: tuple[int | str, ...]


def decoder_inputs(model_path: Path) -> list[DecoderInput]:
    """The graph inputs of an exported decoder (optimum's text-generation-with-past)."""
    import onnx

    graph = onnx.load(model_path, load_external_data=False).graph
    types = {
        onnx.TensorProto.FLOAT: "float32",
        onnx.TensorProto.FLOAT16: "float16",
        onnx.TensorProto.INT64: "int64",
    }
    found = []
    for item in graph.input:
        tensor = item.type.tensor_type
        dims = tuple(d.dim_param or d.dim_value for d in tensor.shape.dim)
        found.append(DecoderInput(item.name, types.get(tensor.elem_type, "float32"), dims))
    return found


def decoder_feed(inputs: list[DecoderInput], ids: list[int]) -> dict[str, Any]:
    """One batch-1 forward of `ids` with no past: input_ids, a full attention mask, positions 0..n-1, and
    empty past keys/values (batch 1, past length 0) for the with-past graph."""
    import numpy as np

    tokens = np.asarray([ids], dtype=np.int64)
    feed: dict[str, Any] = {}
    for item in inputs:
        if item.name == "input_ids":
            feed[item.name] = tokens
        elif item.name == "attention_mask":
            feed[item.name] = np.ones_like(tokens)
        elif item.name == "position_ids":
            feed[item.name] = np.arange(tokens.shape[1], dtype=np.int64)[None, :]
        elif item.name.startswith("past_key_values"):
            shape = [1, *(d if isinstance(d, int) and d > 0 else 0 for d in item.dims[1:])]
            feed[item.name] = np.zeros(shape, dtype=item.dtype)
        else:
            raise CalibrationError(f"the exported decoder has an input tunerflow cannot feed: {item.name}")
    return feed


def calibration_reader(model_path: Path, token_windows: list[list[int]]) -> Any:
    """An onnxruntime CalibrationDataReader over the windows, feeding the model's own inputs."""
    from onnxruntime.quantization import CalibrationDataReader

    inputs = decoder_inputs(model_path)

    class WindowReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = (decoder_feed(inputs, ids) for ids in token_windows)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._feeds, None)

    return WindowReader()
