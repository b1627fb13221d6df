"""tasks.scoring.plugins: metrics found by listing directories, chosen in a conf, ranked their way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.config.base import ConfError
from tasks.config.experiment import parse_experiment
from tasks.config.scoring import ScoringConfig
from tasks.scoring import plugins as scoring_plugins
from tasks.scoring.plugins import ENV_VAR, ScoringPluginError, lower_is_better, metric_names

REPO = Path(__file__).resolve().parents[3]
BUILT_IN = (
    "eval_loss",
    "perplexity",
    "accuracy",
    "bleu",
    "composite",
    "exact_match",
    "keyword_hit",
    "llm_judge",
    "rouge_l",
)

# A lower-is-better metric: how much longer the answer is than the reference, in words (0 when not longer).
SHORTNESS = '''
"""Extra words per answer, relative to the reference (lower is better)."""

import datasets
import evaluate

GREATER_IS_BETTER = False


class Shortness(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="extra words",
            citation="",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        pairs = [(len(p.split()), len(r.split())) for p, r in zip(predictions, references)]
        return {"shortness": sum(max(p - r, 0) / r for p, r in pairs) / len(pairs)}
'''

CONF = {
    "name": "exp",
    "datasets": [{"name": "d", "uri": "builtin:tuna_identity"}],
    "models": [{"name": "m", "uri": "/models/m"}],
    "hparams": [{"preset": "lora-fast"}],
}


def _plugin(directory: Path, name: str, source: str) -> Path:
    (directory / name).mkdir(parents=True)
    script = directory / name / f"{name}.py"
    script.write_text(source)
    return script


@pytest.fixture
def plugins(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "scoring-plugins"
    _plugin(directory, "shortness", SHORTNESS)
    monkeypatch.setenv(ENV_VAR, str(directory))
    return directory


def test_built_in_metrics_and_their_directions(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert set(metric_names()) == {*BUILT_IN, "token_f1"}
    assert [name for name in metric_names() if lower_is_better(name)] == ["eval_loss", "perplexity"]
    assert scoring_plugins.get("keyword_hit").description.startswith("Example scoring plugin")
    assert scoring_plugins.is_loss_metric("perplexity") and not scoring_plugins.is_loss_metric("bleu")


def test_a_plugin_from_the_environment_is_known_with_its_direction(plugins):
    spec = scoring_plugins.get("shortness")
    assert spec.kind == "text" and spec.greater_is_better is False and spec.script.parent.name == "shortness"
    assert spec.description == "Extra words per answer, relative to the reference (lower is better)."
    assert lower_is_better("shortness")
    assert "shortness" in scoring_plugins.text_metric_names()


def test_a_plugin_is_chosen_as_primary_and_computed(plugins):
    from tasks.scoring.metrics import score

    scoring = parse_experiment(
        {**CONF, "scoring": {"metrics": ["rouge_l", "shortness"], "primary": "shortness"}}
    )
    assert scoring.scoring.primary == "shortness"
    # shortness: row 1 has 4 words for a 2-word reference, 2 extra / 2 = 1.0; row 2 is not longer, 0.
    # Mean 0.5. rouge_l: row 1 LCS 2, P = 2/4, R = 2/2, F = 2/3; row 2 LCS 1, P = 1/1, R = 1/2, F = 2/3.
    metrics = score(scoring.scoring.metrics, ["a b c d", "a"], ["a b", "a b"])
    assert metrics == {"rouge_l": 0.666667, "shortness": 0.5}


def test_a_lower_is_better_plugin_ranks_ascending_in_selection(plugins, store_root):
    from tasks.contracts.planning import RunInfo
    from tasks.contracts.prepare import PreparedDataset
    from tasks.pipeline.plan import plan_jobs, validate_conf
    from tasks.pipeline.report_data import better
    from tasks.pipeline.selection import leaderboard
    from tasks.storage import layout, store

    conf = {
        **CONF,
        "hparams": [
            {"preset": "lora-fast"},
            {"preset": "lora-default"},
            {"name": "x", "preset": "lora-fast"},
        ],
    }
    conf["scoring"] = {"metrics": ["shortness", "rouge_l"], "primary": "shortness"}
    validate_conf(conf, "manual__1", store_root)
    info = RunInfo(run_uri=layout.run(store_root, "exp", "manual__1"), store_root=store_root)
    jobs = plan_jobs(info, [PreparedDataset(name="d", uri="file:///prepared/d", kind="chat")])
    for job, metrics in zip(jobs, [{"shortness": 0.9}, {"shortness": 0.2}, {"rouge_l": 0.9}], strict=True):
        prefix = layout.job(info.run_uri, job.job_id)
        for step, result in (
            ("train", {"adapter_uri": "file:///a", "model_uri": None}),
            ("evaluate", {"metrics": metrics}),
        ):
            store.ensure_dir(layout.step(prefix, step))
            store.commit(layout.step(prefix, step), result)
    board = leaderboard(info.run_uri, jobs, "shortness")
    ranked = [(row.label, row.metrics.get("shortness")) for row in board.rows]
    # Ascending; the job without the metric last (not first, as negating a missing value would put it).
    assert ranked == [(jobs[1].label, 0.2), (jobs[0].label, 0.9), (jobs[2].label, None)]
    assert board.winner.label == jobs[1].label
    assert (
        better("shortness") == "lower is better" and better("gone") == "unknown metric: direction not known"
    )


def test_unknown_metric_names_are_refused_with_the_known_ones_listed(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ConfError) as error:
        parse_experiment(
            {**CONF, "scoring": {"metrics": ["rouge_l", "bleu4", "meteor"], "primary": "rouge_l"}}
        )
    message = str(error.value)
    assert (
        "scoring.metrics: unknown metrics 'bleu4', 'meteor'; known metrics: eval_loss, perplexity, "
        in message
    )
    assert all(name in message for name in BUILT_IN) and ENV_VAR in message
    with pytest.raises(ConfError, match=r"scoring.primary: unknown metric 'ROUGE'; known metrics: .*rouge_l"):
        parse_experiment({**CONF, "scoring": {"metrics": ["rouge_l"], "primary": "ROUGE"}})


def test_the_trigger_schema_shows_the_metric_names_and_requires_primary_in_metrics(plugins):
    from tasks.config.params import field_schemas

    schema = field_schemas()["scoring"]
    examples = schema["properties"]["metrics"]["items"]["examples"]
    assert set(BUILT_IN) <= set(examples) and "shortness" in examples
    assert schema["properties"]["primary"]["examples"] == examples
    rules = {rule["then"]["properties"]["metrics"]["contains"]["const"] for rule in schema["allOf"]}
    assert rules == set(examples)
    assert "enum" not in schema["properties"]["metrics"]["items"]  # plugins not parsed yet are allowed


def test_the_direction_flag_must_be_a_literal(tmp_path, monkeypatch):
    _plugin(tmp_path, "computed", "import evaluate\nGREATER_IS_BETTER = not True\n")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(ScoringPluginError, match="GREATER_IS_BETTER must be the literal True or False"):
        metric_names()


def test_flag_with_annotation_and_default_direction(tmp_path, monkeypatch):
    _plugin(tmp_path, "annotated", '"""Annotated."""\nGREATER_IS_BETTER: bool = False\n')
    _plugin(tmp_path, "plain", "import evaluate\n")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert lower_is_better("annotated") and not lower_is_better("plain")


def test_clashing_or_bad_names_and_missing_directories_are_errors(tmp_path, monkeypatch):
    first, second = tmp_path / "one", tmp_path / "two"
    _plugin(first, "bleu", "")
    monkeypatch.setenv(ENV_VAR, str(first))
    with pytest.raises(
        ScoringPluginError, match=r"is named 'bleu' like the metric in .*plugins/scoring/bleu"
    ):
        metric_names()
    (first / "bleu" / "bleu.py").unlink()
    _plugin(first, "same", "")
    _plugin(second, "same", "")
    monkeypatch.setenv(ENV_VAR, os.pathsep.join([str(first), str(second)]))
    with pytest.raises(ScoringPluginError, match="is named 'same' like the metric in"):
        metric_names()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(ScoringPluginError, match="which is not a directory"):
        metric_names()
    bad = tmp_path / "bad"
    _plugin(bad, "Bad-Name", "")
    monkeypatch.setenv(ENV_VAR, str(bad))
    with pytest.raises(ScoringPluginError, match="must be a lowercase identifier"):
        metric_names()


def test_helper_directories_and_files_are_skipped(tmp_path, monkeypatch):
    _plugin(tmp_path, "_shared", "")
    _plugin(tmp_path, ".hidden", "")
    (tmp_path / "notes").mkdir()
    (tmp_path / "loose.py").write_text("")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert set(metric_names()) == {*BUILT_IN, "token_f1"}


def test_a_plugin_added_later_is_seen_without_a_restart(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert "late" not in metric_names()
    _plugin(tmp_path, "late", "GREATER_IS_BETTER = False\n")
    assert lower_is_better("late")
    (tmp_path / "late" / "late.py").write_text("GREATER_IS_BETTER = True\n")
    os.utime(tmp_path / "late" / "late.py", ns=(0, 1))  # a new mtime even on a coarse clock
    assert not lower_is_better("late")


def test_validating_a_conf_imports_neither_evaluate_nor_datasets_nor_torch(plugins):
    """tasks.config.experiment is imported at DAG parse time; discovery reads files, it never imports a
    module."""
    code = textwrap.dedent(
        """
        import json, sys
        from tasks.config.scoring import ScoringConfig
        from tasks.config.params import field_schemas

        ScoringConfig(metrics=["rouge_l", "shortness", "perplexity"], primary="shortness")
        field_schemas()
        heavy = ("evaluate", "datasets", "torch", "rouge_score")
        print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_scoring_config_defaults_are_known_metrics():
    defaults = ScoringConfig()
    assert defaults.primary in defaults.metrics and set(defaults.metrics) <= set(metric_names())
