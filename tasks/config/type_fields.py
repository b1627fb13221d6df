"""The settings of the training types KTO, ORPO, SimPO, CPO and GRPO (their losses' beta, SimPO's margin,
KTO's weights, GRPO's sampling and reward metric), declared as `HParam`s like every other
hyperparameter. Stdlib only: the conf validator and the DAG files import it; the trainers take the values
with `trainer_args` unchanged (`tasks.training.preference_types`, `tasks.training.grpo_reward`), except
`grpo_reward`, which names the scoring metric the reward function computes.
"""

from __future__ import annotations

from tasks.config.hparam_spec import HParam

TYPE_FIELDS: tuple[HParam, ...] = (
    HParam(
        "preference_beta",
        float,
        0.1,
        "KTO, ORPO, SimPO, CPO: the loss's beta. KTO: how far the policy may move from the reference; "
        "ORPO: weight of the odds-ratio term beside the SFT loss (the paper's lambda); SimPO and CPO: "
        "scale of the reward margin (the SimPO paper uses 2 to 2.5).",
        limits={"gt": 0},
        training_types=("kto", "orpo", "simpo", "cpo"),
        trainer_args=("beta",),
    ),
    HParam(
        "simpo_gamma",
        float,
        0.5,
        "SimPO: the target reward margin between the chosen and the rejected answer, over beta.",
        limits={"ge": 0},
        training_types=("simpo",),
        trainer_args=("simpo_gamma",),
    ),
    HParam(
        "kto_desirable_weight",
        float,
        1.0,
        "KTO: weight of the loss on good answers. With more bad than good rows, raise it so that "
        "desirable_weight x good rows is about 1 to 4/3 of undesirable_weight x bad rows (KTO paper).",
        limits={"gt": 0},
        training_types=("kto",),
        trainer_args=("desirable_weight",),
    ),
    HParam(
        "kto_undesirable_weight",
        float,
        1.0,
        "KTO: weight of the loss on bad answers (see kto_desirable_weight).",
        limits={"gt": 0},
        training_types=("kto",),
        trainer_args=("undesirable_weight",),
    ),
    HParam(
        "grpo_reward",
        str | None,
        None,
        "GRPO: the scoring metric that rewards each generated answer against the row's reference answer: "
        "any text metric or scoring plugin (exact_match, token_f1, keyword_hit, llm_judge, ...). Unset: "
        "scoring.primary, so training reinforces what the experiment ranks on.",
        training_types=("grpo",),
    ),
    HParam(
        "grpo_num_generations",
        int,
        8,
        "GRPO: answers generated per prompt, whose rewards are compared with each other; batch_size "
        "(answers per optimizer step) must be a multiple of it.",
        limits={"ge": 2},
        training_types=("grpo",),
        trainer_args=("num_generations",),
    ),
    HParam(
        "grpo_max_completion_length",
        int,
        256,
        "GRPO: the longest generated answer, in tokens.",
        limits={"ge": 1},
        training_types=("grpo",),
        trainer_args=("max_completion_length",),
    ),
    HParam(
        "grpo_temperature",
        float,
        1.0,
        "GRPO: sampling temperature of the generated answers (the group needs different answers).",
        limits={"gt": 0},
        training_types=("grpo",),
        trainer_args=("temperature",),
    ),
)
