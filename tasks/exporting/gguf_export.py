"""GGUF export of a merged llama-family model, for llama.cpp and Ollama (`export.formats: [gguf]`).

Owns the Hugging Face -> GGUF conversion for the llama architecture (written with the `gguf` package;
llama.cpp's converter is not a dependency): metadata, tensor names (`gguf.TensorNameMap`), the q/k
projection permutation llama.cpp applies (and transformers' GGUF loader undoes), the BPE vocabulary with
merges, token types, special token ids and chat template; F16 and Q8_0 files; and the Ollama `Modelfile`
(FROM the q8_0 file, a Go TEMPLATE for ChatML-like chat templates, PARAMETER stop tokens).

The format directory `gguf/` holds `<name>-f16.gguf`, `<name>-q8_0.gguf` (those asked in
`export.gguf_types`), `Modelfile` and the manifest. `tasks.exporting.checks` loads each file back with
transformers' GGUF loader to check it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tasks.runtime.errors import StepError

log = logging.getLogger("tunerflow.export.gguf")

GGUF = "gguf"
GGUF_TYPES = ("f16", "q8_0")
# The config.json model_type this converter writes; the catalog calls the same family `llama`.
LLAMA_FAMILIES = ("llama",)
MODELFILE = "Modelfile"
# Recognisable pre-tokenizers (tokenizer.json) and llama.cpp's name for each: llama.cpp picks its
# pre-tokenizer regex by this name, so an unrecognised one would tokenize differently there.
GPT2_PRE, SMOLLM_PRE, LLAMA3_PRE = "gpt2", "smollm", "llama-bpe"
# ChatML as a Go template (Ollama): messages rendered in turn, then the assistant's turn opened.
CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)


def gguf_file_name(name: str, gguf_type: str) -> str:
    return f"{name}-{gguf_type}.gguf"


def architecture_problem(config: dict[str, Any]) -> str | None:
    """Why this config.json cannot be written as a llama GGUF here, or None."""
    model_type = config.get("model_type")
    if model_type not in LLAMA_FAMILIES:
        return (
            f"gguf is written for llama-family models only ({', '.join(LLAMA_FAMILIES)}); this model's "
            f"model_type is '{model_type}'"
        )
    # Llama 3.1+ rope scaling needs llama.cpp's rope_freqs tensor; biases need tensors llama has not.
    if config.get("rope_scaling"):
        return "gguf: models with rope_scaling (e.g. Llama 3.1+) are not converted yet"
    if config.get("attention_bias") or config.get("mlp_bias"):
        return "gguf: llama models with attention or MLP biases are not converted yet"
    return None


def permute(weights: Any, n_head: int, n_head_kv: int | None = None) -> Any:
    """llama.cpp's rotary layout for q/k: the two halves of each head interleaved (transformers'
    GGUF loader reverses it)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for the model's pre-tokenizer, or a StepError naming what it is."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return GPT2_PRE
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return SMOLLM_PRE
    if kinds == ["Split", "ByteLevel"] and "\\p{N}{1,3}" in json.dumps(steps[0].get("pattern")):
        return LLAMA3_PRE
    raise StepError(
        f"gguf: the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds))}) is not one llama.cpp knows by "
        "name (gpt2, smollm, llama-bpe); remove gguf from export.formats"
    )


def _vocab(tokenizer: Any, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens by id and their llama.cpp types; ids the tokenizer lacks up to the embedding size are
    padding (UNUSED), as llama.cpp writes them."""
    from gguf import TokenType

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(n_vocab):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
        elif index in added:
            tokens.append(by_id[index])
            types.append(TokenType.CONTROL if added[index].special else TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(TokenType.NORMAL)
    return tokens, types


def _tensor_type(name: str, shape: tuple[int, ...], gguf_type: str) -> Any:
    from gguf import GGMLQuantizationType

    # Like llama.cpp: norms (1-D) stay F32; Q8_0 needs whole 32-value blocks along a row.
    if len(shape) == 1:
        return GGMLQuantizationType.F32
    if gguf_type == "q8_0" and shape[-1] % 32 == 0:
        return GGMLQuantizationType.Q8_0
    return GGMLQuantizationType.F16


def write_gguf(model_dir: Path, path: Path, gguf_type: str, name: str) -> dict[str, Any]:
    """One GGUF file of the model in `model_dir` (a merged Hugging Face directory)."""
    import gguf  # heavy (numpy) and only needed when gguf is asked for
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((model_dir / "config.json").read_text())
    problem = architecture_problem(config)
    if problem:
        raise StepError(f"{problem}; remove gguf from export.formats")
    tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text())
    if tokenizer_json.get("model", {}).get("type") != "BPE":
        raise StepError("gguf: only BPE tokenizers are converted; remove gguf from export.formats")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True)
    c = model.config
    n_head, n_kv = c.num_attention_heads, c.num_key_value_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // n_head

    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(c.rope_theta))
    writer.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    writer.add_vocab_size(c.vocab_size)
    file_type = gguf.LlamaFileType.MOSTLY_Q8_0 if gguf_type == "q8_0" else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types = _vocab(tokenizer, c.vocab_size)
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer_json))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=c.vocab_size)
    # The ids the tunerflow tokenizer uses (catalog overrides applied at merge), not config.json's.
    special.special_token_ids = {
        kind: getattr(tokenizer, f"{kind}_token_id")
        for kind in ("bos", "eos", "unk", "pad")
        if getattr(tokenizer, f"{kind}_token_id") is not None
    }
    special.chat_template = tokenizer.chat_template
    # tunerflow trains and scores on the chat template's text with add_special_tokens=False, so llama.cpp
    # must not add a BOS/EOS of its own (the ChatML template already starts with <|im_start|>).
    special.add_special_token = {"bos": False, "eos": False}
    special.add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    tied = c.tie_word_embeddings
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # no output.weight: llama.cpp and transformers tie it to token_embd
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise StepError(f"gguf: no llama GGUF name for tensor {hf_name}; remove gguf from export.formats")
        data = tensor.numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = permute(data, n_head, n_head)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = permute(data, n_head, n_kv)
        qtype = _tensor_type(gguf_name, data.shape, gguf_type)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name, data.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(gguf_name, data.astype(np.float16))
        else:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"file": path.name, "size_bytes": path.stat().st_size}


def _render(tokenizer: Any, messages: list[dict[str, str]], prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)


def modelfile(tokenizer: Any, gguf_name: str) -> str:
    """An Ollama Modelfile for the GGUF file `gguf_name` beside it. The TEMPLATE is written for a
    ChatML-like chat template (checked by rendering it, not by reading the Jinja); a model without a
    chat template gets none (raw completion); any other template is refused."""
    lines = [f"FROM ./{gguf_name}"]
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    if tokenizer.chat_template:
        chatml = "<|im_start|>{role}\n{content}<|im_end|>\n"
        user = [{"role": "user", "content": "U"}]
        turns = [{"role": "system", "content": "S"}, *user, {"role": "assistant", "content": "A"}]
        try:
            rendered, opened = _render(tokenizer, turns, False), _render(tokenizer, user, True)
        except Exception as error:  # a template that cannot render the three roles is not ChatML
            rendered, opened = f"<{type(error).__name__}>", ""
        expected = "".join(chatml.format(**turn) for turn in turns)
        ask = chatml.format(**user[0]) + "<|im_start|>assistant\n"
        default_system = None
        if opened != ask and opened.endswith(ask) and opened.startswith("<|im_start|>system\n"):
            # A template that adds its own system prompt when none is given (SmolLM2): Ollama's SYSTEM.
            default_system = opened[len("<|im_start|>system\n") : -len(ask) - len("<|im_end|>\n")]
            if chatml.format(role="system", content=default_system) + ask != opened:
                default_system, opened = None, ""
        if rendered != expected or not opened.endswith(ask):
            raise StepError(
                "gguf: the Ollama Modelfile's TEMPLATE is written for ChatML-like chat templates "
                "(<|im_start|>role ... <|im_end|>) and this model's chat template is not one; remove gguf "
                "from export.formats"
            )
        lines.append(f'TEMPLATE """{CHATML_GO_TEMPLATE}"""')
        if default_system:
            lines.append(f'SYSTEM """{default_system}"""')
        stops += ["<|im_start|>", "<|im_end|>"]
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in dict.fromkeys(stops)]
    return "\n".join(lines) + "\n"


def export_gguf(model_dir: Path, target: Path, gguf_types: list[str], name: str) -> dict[str, Any]:
    """`target/<name>-<type>.gguf` per type and the Ollama Modelfile; returns the details the export
    result records. The Modelfile is built first so that a refused chat template costs no conversion."""
    from transformers import AutoTokenizer

    model_dir, target = Path(model_dir), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    # Ollama runs the q8_0 file when there is one (smaller, same greedy answers in our checks).
    served = "q8_0" if "q8_0" in gguf_types else gguf_types[0]
    text = modelfile(AutoTokenizer.from_pretrained(model_dir), gguf_file_name(name, served))
    files = {}
    for gguf_type in gguf_types:
        log.info("writing GGUF %s", gguf_type)
        files[gguf_type] = write_gguf(model_dir, target / gguf_file_name(name, gguf_type), gguf_type, name)
    (target / MODELFILE).write_text(text)
    return {"device": "cpu", "files": files, "modelfile": MODELFILE, "ollama_serves": served}
