"""The settings of each PEFT method (LoRA variants and initialisations, AdaLoRA's rank budget, IA3's
modules, the prompt-learning methods' virtual tokens, freeze's trainable layers), declared as `HParam`s
like every other hyperparameter, and the rules that tie them to `training.method`. Stdlib only: the conf
validator and the DAG files import it; `tasks.training.peft_methods` turns the values into PEFT configs.
"""

from __future__ import annotations

from typing import Any, Literal

from tasks.config.hparam_spec import HParam

LoraVariant = Literal["plain", "dora", "rslora"]
LoraInit = Literal["gaussian", "pissa", "olora"]
PromptEncoder = Literal["MLP", "LSTM"]

PEFT_FIELDS: tuple[HParam, ...] = (
    HParam(
        "lora_variant",
        LoraVariant,
        "plain",
        "lora/qlora: plain LoRA, dora (weight-decomposed LoRA: magnitude and direction trained apart) or "
        "rslora (rank-stabilised scaling alpha / sqrt(r)).",
    ),
    HParam(
        "lora_init",
        LoraInit,
        "gaussian",
        "lora/qlora: adapter initialisation: gaussian (B = 0, the model starts as the base), pissa "
        "(principal singular vectors; the base keeps the residual) or olora (QR). pissa/olora adapters "
        "are saved converted to a plain LoRA over the original base, so they load and merge like LoRA.",
    ),
    HParam("adalora_init_r", int, 12, "adalora: starting rank of every adapted matrix.", limits={"ge": 1}),
    HParam(
        "adalora_target_r",
        int,
        4,
        "adalora: average rank left once the budget schedule ends (below adalora_init_r).",
        limits={"ge": 1},
    ),
    HParam(
        "adalora_tinit",
        int,
        0,
        "adalora: optimizer steps of warm-up before the rank budget starts shrinking.",
        limits={"ge": 0},
    ),
    HParam(
        "adalora_tfinal",
        int,
        0,
        "adalora: final optimizer steps trained with the budget fixed at adalora_target_r.",
        limits={"ge": 0},
    ),
    HParam(
        "adalora_delta_t",
        int,
        1,
        "adalora: optimizer steps between two rank reallocations.",
        limits={"ge": 1},
    ),
    HParam(
        "ia3_target_modules",
        list[str] | None,
        None,
        "ia3: modules whose activations get a learned scaling vector; unset: PEFT's default for the "
        "architecture (attention k/v projections and the MLP down projection).",
    ),
    HParam(
        "ia3_feedforward_modules",
        list[str] | None,
        None,
        "ia3: which of ia3_target_modules are feed-forward (scaled on their input); unset: PEFT's default.",
    ),
    HParam(
        "num_virtual_tokens",
        int,
        20,
        "prompt_tuning, prefix_tuning, p_tuning: how many virtual tokens are learned.",
        limits={"ge": 1},
    ),
    HParam(
        "prompt_init_text",
        str | None,
        None,
        "prompt_tuning: start the virtual tokens from this text's token embeddings (unset: random).",
    ),
    HParam(
        "p_tuning_encoder",
        PromptEncoder,
        "MLP",
        "p_tuning: the prompt encoder that produces the virtual tokens, MLP or LSTM.",
    ),
    HParam(
        "freeze_trainable_layers",
        int,
        2,
        "freeze: how many of the last transformer layers are trained; every other weight (embeddings, "
        "earlier layers, final norm, head) keeps requires_grad False.",
        limits={"ge": 1},
    ),
)

# Which methods read each setting: one set to anything but its default for another method is refused.
FIELD_METHODS: dict[str, tuple[str, ...]] = {
    "lora_variant": ("lora", "qlora"),
    "lora_init": ("lora", "qlora"),
    **dict.fromkeys(
        ("adalora_init_r", "adalora_target_r", "adalora_tinit", "adalora_tfinal", "adalora_delta_t"),
        ("adalora",),
    ),
    "ia3_target_modules": ("ia3",),
    "ia3_feedforward_modules": ("ia3",),
    "num_virtual_tokens": ("prompt_tuning", "prefix_tuning", "p_tuning"),
    "prompt_init_text": ("prompt_tuning",),
    "p_tuning_encoder": ("p_tuning",),
    "freeze_trainable_layers": ("freeze",),
}
_DEFAULTS = {spec.name: spec.default for spec in PEFT_FIELDS}
PROMPT_LEARNING = ("prompt_tuning", "prefix_tuning", "p_tuning")


def method_hparam_problems(hp: Any, method: str) -> list[str]:
    """Settings `training.method` cannot run with (hp: a resolved group). Checked when the conf is
    validated and again by the train step."""
    name = f"hparams '{hp.name}'"
    problems = [
        f"{name}: {field} is read by training.method {' or '.join(methods)} only, not '{method}'; remove it"
        for field, methods in FIELD_METHODS.items()
        if method not in methods and getattr(hp, field) != _DEFAULTS[field]
    ]
    if method == "adalora" and hp.adalora_target_r >= hp.adalora_init_r:
        problems.append(
            f"{name}: adalora_target_r ({hp.adalora_target_r}) must be below adalora_init_r "
            f"({hp.adalora_init_r}), or the rank budget has nothing to prune"
        )
    if method == "adalora" and hp.max_steps > 0 and hp.adalora_tinit + hp.adalora_tfinal >= hp.max_steps:
        problems.append(
            f"{name}: adalora_tinit ({hp.adalora_tinit}) + adalora_tfinal ({hp.adalora_tfinal}) leave none "
            f"of max_steps ({hp.max_steps}) for the rank budget to shrink; lower them"
        )
    if method in ("lora", "qlora") and hp.lora_init != "gaussian":
        if hp.lora_variant == "dora":
            problems.append(
                f"{name}: lora_init {hp.lora_init} with lora_variant dora is refused: the trained adapter "
                "cannot be converted back to a LoRA over the original base; use one of them"
            )
        if method == "qlora":
            problems.append(
                f"{name}: lora_init {hp.lora_init} is refused for qlora: the decomposition would change the "
                "4-bit base; use method lora, or lora_init gaussian"
            )
        if hp.deepspeed:
            problems.append(
                f"{name}: lora_init {hp.lora_init} is refused with deepspeed: the decomposition needs the "
                "whole weights in one process; unset deepspeed or use lora_init gaussian"
            )
    if method in PROMPT_LEARNING and (hp.packing or hp.padding_free):
        problems.append(
            f"{name}: packing and padding_free are refused for training.method '{method}': the virtual "
            "tokens are prepended to each row, which needs rows kept apart; unset them"
        )
    return problems
