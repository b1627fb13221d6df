"""The preference types, DPO, KTO, ORPO, SimPO and CPO, as TRL trainers (GRPO's is in
`tasks.training.grpo_reward`). `tasks.training.train_types.build_trainer` loads the model and the shared
arguments and hands them here.

- dpo: TRL's DPOTrainer on preference pairs. With an adapter the reference is the base with the adapter
  switched off (no second copy); with full, TRL loads a frozen copy of the same weights.
- kto: TRL's KTOTrainer on unpaired `prompt` / `completion` / `label` rows. A preference pair becomes two
  such rows (chosen: good, rejected: bad; TRL's unpairing), so DPO datasets train it too. With an adapter
  the reference is the base with the adapter switched off; with full, TRL loads a frozen copy.
- orpo: TRL's ORPOTrainer on preference pairs: SFT loss on the chosen answer plus an odds-ratio term
  (weight `preference_beta`); no reference model.
- simpo / cpo: TRL's CPOTrainer on preference pairs, `loss_type` simpo (length-normalised margin with
  target `simpo_gamma`; `cpo_alpha` 0, the SimPO paper's pure loss) or sigmoid (CPO: with a behaviour
  cloning term on the chosen answer); no reference model.

Heavy imports (trl, datasets) stay inside functions.
"""

from __future__ import annotations

import os
from typing import Any

from tasks.runtime.errors import StepError

# ORPO and CPO live in trl.experimental, which warns on every import; the choice is deliberate (TRL has no
# stable home for them), so the warning would only be noise in every job's log.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
UNPAIRED_KEYS = ("prompt", "completion", "label")


def kto_rows(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Unpaired rows for KTO: as prepared (kind unpaired), or two per preference pair (chosen good,
    rejected bad)."""
    if kind == "unpaired":
        return [{key: row[key] for key in UNPAIRED_KEYS} for row in rows]
    if kind == "preference":
        return [
            {"prompt": row["prompt"], "completion": row[answer], "label": answer == "chosen"}
            for row in rows
            for answer in ("chosen", "rejected")
        ]
    raise StepError(f"kto trains on unpaired or preference rows, not {kind} rows")


def pair_rows(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    if kind != "preference":
        raise StepError(f"this training type trains on preference rows, not {kind} rows")
    return [{key: row[key] for key in PREFERENCE_KEYS} for row in rows]


def kto_balance(rows: list[dict[str, Any]], split: str) -> None:
    """KTO compares good with bad answers within a batch; a split of one label only cannot train."""
    labels = {bool(row["label"]) for row in rows}
    if rows and labels != {True, False}:
        have = "good" if True in labels else "bad"
        raise StepError(
            f"{split}: every KTO row is a {have} answer; KTO needs both good (label true) and bad "
            "(label false) answers"
        )


def build_preference_trainer(
    training_type: str,
    model: Any,
    tokenizer: Any,
    peft_config: Any,
    args: dict[str, Any],
    max_length: int,
    data: tuple[list[dict[str, Any]], list[dict[str, Any]], str],
    callbacks: list[Any],
) -> Any:
    """The TRL trainer of `training_type` (dpo, kto, orpo, simpo or cpo). `args` are the TrainingArguments
    shared by every type plus the hyperparameters the type takes unchanged (trainer_arguments);
    `data` is (train rows, validation rows, dataset kind)."""
    from datasets import Dataset

    train_rows, eval_rows, kind = data
    if training_type == "dpo":
        from trl import DPOConfig, DPOTrainer

        train, evaluation = pair_rows(train_rows, kind), pair_rows(eval_rows, kind)
        # ref_model=None: TRL disables the adapter for the reference, or loads a frozen copy (full).
        config_class, trainer_class, extra = DPOConfig, DPOTrainer, {"ref_model": None}
    elif training_type == "kto":
        from trl import KTOConfig, KTOTrainer

        train, evaluation = kto_rows(train_rows, kind), kto_rows(eval_rows, kind)
        kto_balance(train, "train")
        config_class, trainer_class, extra = KTOConfig, KTOTrainer, {"ref_model": None}
    elif training_type == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        train, evaluation = pair_rows(train_rows, kind), pair_rows(eval_rows, kind)
        config_class, trainer_class, extra = ORPOConfig, ORPOTrainer, {}
    elif training_type in ("simpo", "cpo"):
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        train, evaluation = pair_rows(train_rows, kind), pair_rows(eval_rows, kind)
        config_class, trainer_class, extra = CPOConfig, CPOTrainer, {}
        # SimPO is CPO's trainer with the simpo loss and no behaviour-cloning term (the SimPO paper's loss).
        args = {**args, "loss_type": "simpo", "cpo_alpha": 0.0} if training_type == "simpo" else args
    else:
        raise StepError(f"training.type '{training_type}' is not a preference type")
    config = config_class(**args, max_length=max_length)
    return trainer_class(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(evaluation) if evaluation else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        **extra,
    )
