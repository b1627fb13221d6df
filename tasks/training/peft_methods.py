"""Which weights a training method moves: the base model loaded for it and, from `training.method` and the
hyperparameters, PEFT's own config (LoRA with its DoRA/rsLoRA variants and PiSSA/OLoRA initialisations,
AdaLoRA, IA3, prompt tuning, prefix tuning, P-tuning) or the frozen model (freeze: the last N layers).

Also what only some methods need around the trainer: AdaLoRA's rank reallocation after every optimizer
step (the Trainer does not call it), and saving a PiSSA/OLoRA adapter converted to a plain LoRA over the
original base, so that evaluation, merging and export load it like any LoRA adapter. Imports from
`tasks.config`, `tasks.runtime` and `tasks.training.base_models`; heavy imports inside functions.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.config.catalog import CatalogEntry, pretrained_kwargs
from tasks.config.hparams import ResolvedHParams
from tasks.config.training import PROMPT_METHODS
from tasks.runtime.errors import StepError
from tasks.training.base_models import weights_location

log = logging.getLogger("tunerflow.train")


@dataclass
class Prepared:
    """The model the trainer gets, the PEFT config it wraps the model with (None when the model is
    already wrapped or trains without adapters), and for PiSSA/OLoRA the saved initial adapter."""

    model: Any
    peft_config: Any = None
    initial_adapter: Path | None = None


def load_model(entry: CatalogEntry, store_root: str, hp: ResolvedHParams, method: str, precision: str) -> Any:
    """The base model as `method` trains it: 4-bit NF4 for qlora, the compute dtype under adapters,
    float32 master weights when weights themselves are trained (full, freeze)."""
    import torch
    from transformers import AutoModelForCausalLM

    compute = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    kwargs: dict[str, Any] = {"attn_implementation": hp.attn_implementation, **pretrained_kwargs(entry)}
    if method == "qlora":
        # Imported here: bitsandbytes settings are only needed for QLoRA.
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["dtype"] = compute
        # Each data-parallel process quantizes its own copy onto its own GPU.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    elif method in ("full", "freeze"):
        # Trained weights stay float32 master weights; bf16/fp16 then run as autocast (mixed precision).
        kwargs["dtype"] = torch.float32
    else:
        # The frozen base can sit in the compute dtype: only the adapters (float32, PEFT) get updates.
        kwargs["dtype"] = compute
    model = AutoModelForCausalLM.from_pretrained(weights_location(entry, store_root), **kwargs)
    if method == "qlora":
        # Imported here: PEFT is loaded only by the adapter methods.
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=hp.gradient_checkpointing)
    return model


def lora_config(hp: ResolvedHParams) -> Any:
    """LoraConfig with the variant (DoRA, rsLoRA) and initialisation (gaussian, PiSSA, OLoRA) asked for."""
    from peft import LoraConfig

    return LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=hp.lora_target_modules,
        use_dora=hp.lora_variant == "dora",
        use_rslora=hp.lora_variant == "rslora",
        init_lora_weights=True if hp.lora_init == "gaussian" else hp.lora_init,
        task_type="CAUSAL_LM",
    )


def peft_config(hp: ResolvedHParams, method: str, tokenizer_path: str) -> Any:
    """PEFT's config for an adapter method (None for full and freeze)."""
    import peft

    if method in ("lora", "qlora"):
        return lora_config(hp)
    if method == "adalora":
        # PEFT wants total_step when the config is built, before the Trainer knows the run's steps (from
        # max_steps or epochs): a placeholder here, the real count set and checked in adalora_begin.
        total = hp.adalora_tinit + hp.adalora_tfinal + 1
        return peft.AdaLoraConfig(
            init_r=hp.adalora_init_r,
            target_r=hp.adalora_target_r,
            tinit=hp.adalora_tinit,
            tfinal=hp.adalora_tfinal,
            deltaT=hp.adalora_delta_t,
            total_step=total,
            lora_alpha=hp.lora_alpha,
            lora_dropout=hp.lora_dropout,
            target_modules=hp.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    if method == "ia3":
        return peft.IA3Config(
            target_modules=hp.ia3_target_modules,
            feedforward_modules=hp.ia3_feedforward_modules,
            task_type="CAUSAL_LM",
        )
    if method == "prompt_tuning":
        text = hp.prompt_init_text
        return peft.PromptTuningConfig(
            num_virtual_tokens=hp.num_virtual_tokens,
            prompt_tuning_init="TEXT" if text else "RANDOM",
            prompt_tuning_init_text=text,
            tokenizer_name_or_path=tokenizer_path if text else None,
            task_type="CAUSAL_LM",
        )
    if method == "prefix_tuning":
        # Deep prompts: learned keys and values at every layer ("P-tuning v2").
        return peft.PrefixTuningConfig(num_virtual_tokens=hp.num_virtual_tokens, task_type="CAUSAL_LM")
    if method == "p_tuning":
        return peft.PromptEncoderConfig(
            num_virtual_tokens=hp.num_virtual_tokens,
            encoder_reparameterization_type=hp.p_tuning_encoder,
            task_type="CAUSAL_LM",
        )
    return None


def decoder_layers(model: Any) -> tuple[str, Any]:
    """The name and ModuleList of the model's transformer blocks (the list as long as the config's
    num_hidden_layers)."""
    import torch

    count = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return name, module
    raise StepError(
        f"training.method 'freeze': no list of {count} transformer layers found in {type(model).__name__}"
    )


def freeze_all_but_last(model: Any, layers: int) -> list[str]:
    """requires_grad False on every parameter outside the last `layers` transformer layers; the names
    of the trainable ones."""
    name, blocks = decoder_layers(model)
    if layers > len(blocks):
        raise StepError(
            f"hparams freeze_trainable_layers {layers} exceeds the model's {len(blocks)} layers; lower it "
            "or use method full"
        )
    keep = tuple(f"{name}.{index}." for index in range(len(blocks) - layers, len(blocks)))
    trainable = []
    for parameter_name, parameter in model.named_parameters():
        parameter.requires_grad = parameter_name.startswith(keep)
        if parameter.requires_grad:
            trainable.append(parameter_name)
    log.info("freeze: training %d tensors of layers %s", len(trainable), ", ".join(k[:-1] for k in keep))
    return trainable


def prepare(model: Any, hp: ResolvedHParams, method: str, tokenizer_path: str) -> Prepared:
    """The model and PEFT config for `method`. PiSSA/OLoRA are wrapped here: the decomposition is kept as
    the initial adapter, from which the trained one is converted when saved (see save_weights)."""
    if method == "freeze":
        freeze_all_but_last(model, hp.freeze_trainable_layers)
        if hp.gradient_checkpointing:
            # The frozen embeddings give the checkpointed layers inputs without a gradient otherwise.
            model.enable_input_require_grads()
        return Prepared(model)
    config = peft_config(hp, method, tokenizer_path)
    if config is None or method not in ("lora", "qlora") or hp.lora_init == "gaussian":
        return Prepared(model, config)
    # Imported here: only the adapter methods load PEFT.
    from peft import get_peft_model

    wrapped = get_peft_model(model, config)
    # The decomposition is done: a second adapter (TRL's DPO reference copy) or a reload must not
    # decompose the residual base again, and the initial adapter is saved as a plain LoRA init.
    wrapped.peft_config["default"].init_lora_weights = True
    initial = Path(tempfile.mkdtemp(prefix="tunerflow-init-")) / "initial_adapter"
    wrapped.save_pretrained(str(initial), safe_serialization=True)
    return Prepared(wrapped, None, initial)


def _adalora_tuner(model: Any) -> Any:
    # Under accelerate the model may be wrapped (DDP): the PEFT model is inside.
    return getattr(model, "module", model).base_model


def adalora_begin(model: Any, total: int) -> None:
    """Fit AdaLoRA's budget schedule to the steps this run trains (max_steps, or what epochs make)."""
    tuner = _adalora_tuner(model)
    config = tuner.peft_config[tuner.trainable_adapter_name]
    if config.tinit >= total - config.tfinal:
        raise StepError(
            f"hparams adalora_tinit ({config.tinit}) + adalora_tfinal ({config.tfinal}) leave none of the "
            f"{total} steps this run trains for the rank budget to shrink; lower them"
        )
    config.total_step = total
    tuner.rankallocator.set_total_step(total)


def adalora_step(model: Any, global_step: int) -> None:
    """Reallocate AdaLoRA's ranks. Called from on_optimizer_step, after optimizer.step() and before
    zero_grad(): the gradients the importance scores need are still there."""
    _adalora_tuner(model).update_and_allocate(global_step)


def method_callbacks(method: str) -> list[Any]:
    """Trainer callbacks a method needs: AdaLoRA's rank reallocation after every optimizer step, which
    the Trainer does not call."""
    if method != "adalora":
        return []
    # Imported here: transformers is loaded only in the train step.
    from transformers import TrainerCallback

    class AdaLoraSchedule(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            adalora_begin(kwargs["model"], state.max_steps)

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # global_step still counts the steps before this one, as PEFT's examples pass it.
            adalora_step(kwargs["model"], state.global_step)

    return [AdaLoraSchedule()]


def save_weights(trainer: Any, prepared: Prepared | None, directory: Path, main_process: bool) -> None:
    """Save the trained weights: every process joins (ZeRO-3 gathers its shards), rank 0 writes. A
    PiSSA/OLoRA adapter is written converted to a LoRA of twice the rank over the original base."""
    if prepared is None or prepared.initial_adapter is None:
        trainer.save_model(str(directory))
        return
    if main_process:
        model = trainer.accelerator.unwrap_model(trainer.model)
        # Only the trained adapter: TRL's DPO adds a frozen "ref" copy beside it.
        model.save_pretrained(
            str(directory),
            selected_adapters=["default"],
            safe_serialization=True,
            path_initial_model_for_weight_conversion=str(prepared.initial_adapter),
        )
    shutil.rmtree(prepared.initial_adapter.parent, ignore_errors=True)


def rank_budget(model: Any) -> tuple[int, int]:
    """AdaLoRA: (singular values in use, singular values there are) over every adapted matrix; the
    pruned ones are masked to exactly 0."""
    used = total = 0
    for name, parameter in model.named_parameters():
        if re.search(r"\.lora_E\.", name):
            used += int(parameter.detach().ne(0).sum())
            total += parameter.numel()
    return used, total


def is_prompt_learning(method: str) -> bool:
    return method in PROMPT_METHODS
