"""The merge section's rules: refused when the conf is validated, naming the field and what to do."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from tasks.config.merge import MergeConfig, method_problem


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"top_k": 3, "weights": [0.5, 0.5]},
            "merge.weights: give one weight per merged job (top_k = 3), got 2",
        ),
        ({"method": "slerp", "top_k": 3}, "merge.top_k: slerp interpolates between two models; set top_k: 2"),
        ({"method": "slerp", "weights": [0.0, 0.0]}, "merge.weights: slerp's weights must be >= 0"),
        ({"method": "linear", "density": 0.3}, "merge.density: only ties, dare_linear, dare_ties prune"),
        ({"method": "svd", "density": 0.3}, "method 'svd' ignores density"),
        ({"top_k": 1}, "top_k"),
        ({"method": "cat"}, "method"),
    ],
)
def test_settings_that_do_not_fit_are_refused_naming_the_field(settings, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        MergeConfig(enabled=True, **settings)


def test_settings_that_fit_are_accepted():
    assert MergeConfig(method="ties", top_k=3, weights=[1, 0.5, 0.5], density=0.3).density == 0.3
    assert MergeConfig(method="slerp", weights=[0.7, 0.3]).top_k == 2
    # The defaults of every field, as a run records them, validate again whatever the method.
    recorded = MergeConfig(method="svd").model_dump()
    assert MergeConfig.model_validate(recorded).method == "svd"


def test_default_weights_average_what_is_summed_and_keep_what_ties_averages():
    assert MergeConfig(method="linear", top_k=4).part_weights(4) == [0.25] * 4
    assert MergeConfig(method="svd").part_weights(2) == [0.5, 0.5]
    assert MergeConfig(method="ties", top_k=3).part_weights(3) == [1.0, 1.0, 1.0]
    assert MergeConfig(method="slerp").part_weights(2) == [0.5, 0.5]
    # Fewer successful jobs than top_k: the first weights given, or an average of those merged.
    assert MergeConfig(top_k=3, weights=[0.5, 0.3, 0.2]).part_weights(2) == [0.5, 0.3]
    assert MergeConfig(top_k=3).part_weights(2) == [0.5, 0.5]


def test_svd_is_for_adapters_and_slerp_for_full_fine_tunes():
    assert method_problem(MergeConfig(method="svd"), "lora") is None
    assert method_problem(MergeConfig(method="slerp"), "full") is None
    assert method_problem(MergeConfig(method="ties"), "qlora") is None
    refused = method_problem(MergeConfig(method="svd"), "full")
    assert refused.startswith("merge.method 'svd' cannot merge full fine-tunes (training.method 'full')")
    assert "slerp" in refused
    assert "merge.method 'slerp' cannot merge LoRA adapters" in method_problem(
        MergeConfig(method="slerp"), "qlora"
    )


def test_the_experiment_names_the_merge_field(tmp_path):
    from tasks.config.base import ConfError
    from tasks.config.experiment import parse_experiment

    conf = {
        "name": "exp",
        "datasets": [{"name": "a", "uri": "builtin:tuna_identity"}],
        "models": [{"name": "m", "uri": "/models/m"}],
        "hparams": [{"preset": "lora-fast"}],
        "merge": {"enabled": True, "top_k": 3, "weights": [1.0]},
    }
    with pytest.raises(ConfError, match=r"merge: merge.weights: give one weight per merged job"):
        parse_experiment(conf)


def test_the_example_conf_validates():
    import yaml

    from tasks.config.experiment import parse_experiment
    from tests.conftest import REPO

    conf = yaml.safe_load((REPO / "include/configs/experiments/merge-ties.yaml").read_text())
    experiment = parse_experiment(conf)
    assert experiment.merge.enabled and experiment.merge.method == "ties"
    assert method_problem(experiment.merge, experiment.training.method) is None
