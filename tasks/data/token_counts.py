"""Token lengths of prepared rows under each training model's tokenizer, fast enough for millions of rows.

The main process loads every tokenizer once with transformers (catalog overrides, chat template) and
measures what the chat template adds; worker processes then count with the Rust `tokenizers` library
alone (`encode_batch_fast`, no transformers import, no Python lists of ids). A chat row is counted as
its turns' contents joined by newlines plus the template's measured per-turn and fixed overheads, so
the count matches the rendered template to within a token or two per turn. A vision row's count adds the
tokens each of its images becomes in a vision model (`tasks.training.image_tokens`: LLaVA-1.5's 576 per
image, Qwen2-VL's from the image's size as the image check read it), so `max_tokens` and the card's
lengths see what the model will.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tasks.config.catalog import CatalogEntry, model_modality
from tasks.runtime.errors import StepError
from tasks.training.base_models import load_tokenizer
from tasks.training.image_tokens import ImageTokens, model_image_tokens

log = logging.getLogger("tunerflow.token_counts")
Entry = TypeVar("Entry", CatalogEntry, dict[str, Any])

_PROBE = [
    {"role": "user", "content": "Which colour is the sky?"},
    {"role": "assistant", "content": "Blue, on a clear day."},
]


@dataclass(frozen=True)
class TokenizerSpec:
    """What a worker needs to count tokens for one model: picklable, no transformers objects.

    `byte_level`: a byte-level BPE with no normalizer (GPT-2, Llama 3, Qwen2, SmolLM2 ...), where every
    token stands for at least one and at most `max_token_bytes` bytes of the text, so a text of b bytes
    has between ceil(b / max_token_bytes) and b + 1 tokens. Rows those bounds already place inside
    [min_tokens, max_tokens] need no counting to be validated.

    `images`: for a vision model, what each image of a row adds to the count; None for a text model.
    """

    name: str
    path: str
    turn_overhead: float
    fixed_overhead: int
    byte_level: bool = False
    max_token_bytes: int = 0
    images: ImageTokens | None = None


def tokenizer_identity(entry: CatalogEntry | dict[str, Any]) -> str:
    """Models that share weights source and special-token overrides share a tokenizer. The identity is
    part of a dataset's content version, so it is spelled as the planner has always stored an entry."""
    entry = CatalogEntry.model_validate(entry)
    identity = {"source": entry.source.model_dump(mode="json"), "tokenizer": entry.tokenizer}
    return json.dumps(identity, sort_keys=True)


def distinct_tokenizers(entries: list[Entry]) -> list[Entry]:
    """The first entry of each tokenizer, as given: catalog entries, or the planner's resolved dicts."""
    seen: dict[str, Entry] = {}
    for entry in entries:
        seen.setdefault(tokenizer_identity(entry), entry)
    return list(seen.values())


def _content_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(
        m["content"] + (json.dumps(m["tool_calls"]) if m.get("tool_calls") else "") for m in messages
    )


def row_text(row: dict[str, Any]) -> tuple[str, int]:
    """(text to count, number of turns): what the trainer will see, before template markup."""
    if "text" in row:
        return row["text"], 0
    if "completion" in row:  # an unpaired (KTO) row: one answer
        turns = row["prompt"] + row["completion"]
        return _content_text(turns), len(turns)
    if "prompt" in row:
        # The longer answer bounds the sequence the trainer builds for the pair.
        longer = max(row["chosen"], row["rejected"], key=lambda turns: len(_content_text(turns)))
        turns = row["prompt"] + longer
        return _content_text(turns), len(turns)
    return _content_text(row["messages"]), len(row["messages"])


def _overheads(tokenizer: Any) -> tuple[float, int]:
    """(tokens the chat template adds per turn, tokens added once), measured on a probe conversation."""

    def plain(turns: list[dict[str, Any]]) -> int:
        return len(tokenizer(_content_text(turns), add_special_tokens=False)["input_ids"])

    if not getattr(tokenizer, "chat_template", None):
        with_special = len(tokenizer("x", add_special_tokens=True)["input_ids"])
        return 0.0, with_special - len(tokenizer("x", add_special_tokens=False)["input_ids"])
    one, two = _PROBE, _PROBE + _PROBE
    rendered_one = len(tokenizer.apply_chat_template(one, tokenize=True))
    rendered_two = len(tokenizer.apply_chat_template(two, tokenize=True))
    per_pair = (rendered_two - plain(two)) - (rendered_one - plain(one))
    fixed = (rendered_one - plain(one)) - per_pair
    return max(per_pair, 0) / 2, max(fixed, 0)


def _byte_level_facts(path: Path) -> tuple[bool, int]:
    """(is it a byte-level BPE without a normalizer, the longest token in bytes) from tokenizer.json."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    normalizer = spec.get("normalizer")
    no_normalizer = normalizer is None or (
        normalizer.get("type") == "Sequence" and not normalizer["normalizers"]
    )
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    byte_level = spec["model"].get("type") == "BPE" and any(step.get("type") == "ByteLevel" for step in steps)
    if not (no_normalizer and byte_level):
        return False, 0
    # Byte-level vocabularies spell each byte as one character, so a token's length is its byte count.
    longest = max(len(token) for token in spec["model"]["vocab"])
    added = max((len(t["content"].encode()) for t in spec.get("added_tokens", [])), default=0)
    return True, max(longest, added)


def prepare_tokenizers(entries: list[CatalogEntry], store_root: str, work_dir: Path) -> list[TokenizerSpec]:
    """Load each distinct tokenizer once and save its fast form where worker processes can read it."""
    specs = []
    for index, entry in enumerate(distinct_tokenizers(entries)):
        tokenizer = load_tokenizer(entry, store_root)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"model '{entry.name}': token lengths need a fast (Rust) tokenizer")
        target = work_dir / f"tokenizer-{index}.json"
        tokenizer.backend_tokenizer.save(str(target))
        turn, fixed = _overheads(tokenizer)
        byte_level, longest = _byte_level_facts(target)
        images = _image_tokens(entry, store_root, work_dir / f"processor-{index}")
        specs.append(TokenizerSpec(entry.name, str(target), turn, fixed, byte_level, longest, images))
        log.info("tokenizer of %s: %.1f template tokens per turn, %d fixed", entry.name, turn, fixed)
    return specs


def _image_tokens(entry: CatalogEntry, store_root: str, save_dir: Path) -> ImageTokens | None:
    """A vision model's image token rule; None for a text model, or (said in the log) where its processor
    does not load here, leaving the train step's length check to drop the rows its images make too long."""
    if model_modality(entry) != "vision":
        return None
    try:
        rule = model_image_tokens(entry, store_root, save_dir)
    except (OSError, ValueError, ImportError, StepError) as error:  # no processor here: count the text
        log.warning(
            "model %s: image tokens are not counted (its processor does not load here: %s: %s); rows too "
            "long with them are dropped by the train step",
            entry.name,
            type(error).__name__,
            error,
        )
        return None
    log.info("model %s: image tokens per image: %s", entry.name, rule.per_image_shown())
    return rule


def _image_extra(spec: TokenizerSpec, rows: list[dict[str, Any]]) -> np.ndarray:
    """Tokens each row's images add under the spec's model (0 for a text model or a row without images)."""
    if spec.images is None:
        return np.zeros(len(rows), dtype=np.int64)
    return np.fromiter(
        (spec.images.added(row.get("image_sizes"), len(row.get("images", ()))) for row in rows),
        dtype=np.int64,
        count=len(rows),
    )


class TokenCounter:
    """Counts tokens of internal rows under every tokenizer; built once per worker process."""

    def __init__(self, specs: list[TokenizerSpec]):
        from tokenizers import Tokenizer  # the Rust library: only where rows are counted, not at DAG parse

        self.specs = specs
        self._tokenizers = [Tokenizer.from_file(spec.path) for spec in specs]
        for tokenizer in self._tokenizers:
            tokenizer.no_truncation()
            tokenizer.no_padding()

    def count(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """{model name: int32 token count per row}, every row counted."""
        return self.lengths(rows, np.ones(len(rows), dtype=bool), 0, None)

    def lengths(
        self, rows: list[dict[str, Any]], sampled: np.ndarray, min_tokens: int, max_tokens: int | None
    ) -> dict[str, np.ndarray]:
        """{model name: int32 token count per row, -1 where the count was not needed}: counted for the
        `sampled` rows (the length statistics) and for every row the byte bounds cannot place within
        [min_tokens, max_tokens]; a -1 row is proven to be within them."""
        if not rows:
            return {spec.name: np.zeros(0, dtype=np.int32) for spec in self.specs}
        texts, turns = zip(*(row_text(row) for row in rows), strict=True)
        turns_array = np.asarray(turns, dtype=np.float64)
        nbytes = np.fromiter((len(t.encode()) for t in texts), dtype=np.int64, count=len(texts))
        out = {}
        for spec, tokenizer in zip(self.specs, self._tokenizers, strict=True):
            extra = np.ceil(turns_array * spec.turn_overhead).astype(np.int64) + spec.fixed_overhead
            extra += _image_extra(spec, rows)
            need = sampled.copy()
            if spec.byte_level:
                if max_tokens is not None:
                    need |= nbytes + 1 + extra > max_tokens
                need |= -(-nbytes // spec.max_token_bytes) + extra < min_tokens
            else:
                need[:] = True
            counts = np.full(len(rows), -1, dtype=np.int64)
            chosen = np.flatnonzero(need)
            if len(chosen):
                encodings = tokenizer.encode_batch_fast([texts[i] for i in chosen], add_special_tokens=False)
                plain = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))
                counts[chosen] = plain + extra[chosen]
            out[spec.name] = counts.astype(np.int32)
        return out
