from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import store
from tasks.check_export import check_export
from tasks.export import export
from tasks.step import StepError, execute
from tests.fixtures.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
FORMATS = ["onnx", "onnx-int8"]


def entry_for(model_dir: Path) -> dict:
    return {"name": "tiny", "source": {"path": str(model_dir)}, "kind": "uri"}


def export_job(
    root: str, name: str, model_dir: Path, formats: list[str], adapter: Path | None = None
) -> dict:
    return {
        "step": "export",
        "output": store.join(root, name, "export"),
        "store_root": root,
        "model": entry_for(model_dir),
        "adapter_uri": store.to_uri(adapter) if adapter else None,
        "model_uri": None,
        "formats": formats,
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return tmp_path_factory.mktemp("store").as_uri()


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # Random A and B (not the zero-B default), so that merging visibly changes the weights.
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    path = tmp_path_factory.mktemp("adapter")
    get_peft_model(base, config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def exported(root, tiny_model_dir, adapter) -> dict:
    return execute("export", export, export_job(root, "good", tiny_model_dir, FORMATS, adapter))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("dataset")
    questions = ["Who are you?", "What do you do?", "Which format do you export?"]
    rows = [
        {
            "id": str(i),
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ONNX."}],
        }
        for i, q in enumerate(questions)
    ]
    (directory / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return store.to_uri(directory)


def check_job(root: str, name: str, exported: dict, model_dir: Path, dataset: str, reference: dict) -> dict:
    return {
        "step": "check_export",
        "output": store.join(root, name, "check_export"),
        "store_root": root,
        "model": entry_for(model_dir),
        "export": exported,
        "dataset": {"name": "qa", "uri": dataset, "counts": {"train": 0, "validation": 0, "test": 3}},
        "scoring": {"metrics": ["exact_match", "rouge_l"], "primary": "rouge_l", "max_new_tokens": 6},
        "export_config": {},
        "reference_metrics": reference,
    }


def test_export_merges_the_adapter_and_every_format_loads_and_generates(exported, tiny_model_dir, adapter):
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.generation import generate

    assert sorted(exported["formats"]) == FORMATS
    assert exported["pytorch_size_bytes"] > 0
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    merged = AutoModelForCausalLM.from_pretrained(store.local_path(exported["merged_uri"]))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.inference_mode():
        merged_logits = merged(ids).logits
        assert not torch.allclose(merged_logits, base(ids).logits, atol=1e-4)
        unmerged = PeftModel.from_pretrained(base, adapter)(ids).logits
    assert torch.allclose(merged_logits, unmerged, atol=1e-4)

    for fmt in FORMATS:
        info = exported["formats"][fmt]
        directory = store.local_path(info["uri"])
        assert info["size_bytes"] == (directory / "model.onnx").stat().st_size
        model = ORTModelForCausalLM.from_pretrained(directory)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        answers, stats = generate(model, tokenizer, ["Who are you?", "Hi"], max_new_tokens=4, batch_size=2)
        assert len(answers) == 2 and stats["generated_tokens"] > 0


def test_check_export_passes_a_good_export_and_reports_every_check(root, exported, tiny_model_dir, dataset):
    job = check_job(root, "good", exported, tiny_model_dir, dataset, reference={})
    result = execute("check_export", check_export, job)
    assert result["passed"]
    assert store.read_json(store.join(job["output"], "checks.json")) == result
    fp32 = result["formats"]["onnx"]
    assert fp32["max_logit_diff"] < 1e-3 and fp32["next_token_agreement"] == 1.0
    assert fp32["metric_drop"] == pytest.approx(0.0, abs=1e-6)
    for checks in result["formats"].values():
        assert checks["passed"] and not checks["problems"]
        assert set(checks["metrics"]) == {"exact_match", "rouge_l"}
        assert 0 < checks["latency"]["p50_ms"] <= checks["latency"]["p95_ms"]
        assert checks["size_ratio"] > 0
    assert result["pytorch"]["latency"]["tokens"] == 128


def test_check_export_refuses_the_onnx_of_a_different_model(
    root, exported, tiny_model_dir, dataset, tmp_path
):
    other = build_tiny_model(tmp_path / "other", seed=1)
    impostor = execute("export", export, export_job(root, "impostor", other, ["onnx"]))
    forged = {**exported, "formats": {"onnx": impostor["formats"]["onnx"]}}
    job = check_job(root, "impostor", forged, tiny_model_dir, dataset, reference={})
    with pytest.raises(StepError, match=r"onnx: max_logit_diff [0-9.e-]+ > 0\.01"):
        execute("check_export", check_export, job)
    checks = store.read_json(store.join(job["output"], "checks.json"))
    assert checks["passed"] is False
    assert not store.is_committed(job["output"])


def test_metric_drop_is_gated_for_every_format(root, exported, tiny_model_dir, dataset):
    job = check_job(root, "drop", exported, tiny_model_dir, dataset, reference={"rouge_l": 1.0})
    with pytest.raises(StepError) as raised:
        execute("check_export", check_export, job)
    for fmt in FORMATS:
        assert f"{fmt}: metric_drop (rouge_l)" in str(raised.value)
    assert "> 0.05" in str(raised.value)


def test_unknown_format_is_refused(root, tiny_model_dir):
    with pytest.raises(StepError, match="unknown formats"):
        export(export_job(root, "bad", tiny_model_dir, ["tensorrt"]))


def test_cli_exports_int8_alone_and_prints_one_json_line(root, tiny_model_dir):
    job = export_job(root, "cli", tiny_model_dir, ["onnx-int8"])
    done = subprocess.run(
        [sys.executable, "-m", "tasks.export", "--job", json.dumps(job)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert list(result["formats"]) == ["onnx-int8"]
    # The fp32 graph int8 came from was scratch: neither kept nor left behind.
    output = store.local_path(job["output"])
    assert sorted(p.name for p in output.iterdir()) == ["manifest.json", "merged", "onnx-int8"]


def test_eval_loss_primary_gates_the_first_generation_metric_instead():
    from tasks.check_export import gated_metric
    from tasks.config import ScoringConfig

    assert gated_metric(ScoringConfig(metrics=["eval_loss", "token_f1"], primary="eval_loss")) == "token_f1"
    assert gated_metric(ScoringConfig(metrics=["eval_loss"], primary="eval_loss")) is None
    assert gated_metric(ScoringConfig()) == "rouge_l"
    assert gated_metric(ScoringConfig(metrics=["perplexity", "bleu"], primary="perplexity")) == "bleu"


def test_the_metric_drop_of_a_lower_is_better_metric_is_a_rise(tmp_path, monkeypatch):
    from tasks.check_export import metric_drop
    from tasks.scoring_plugins import ENV_VAR

    (tmp_path / "distance").mkdir()
    (tmp_path / "distance" / "distance.py").write_text("GREATER_IS_BETTER = False\n")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert metric_drop("rouge_l", 0.5, 0.4) == 0.1  # fell by 0.1
    assert metric_drop("distance", 0.5, 0.4) == -0.1  # fell: the export is better
    assert metric_drop("distance", 0.4, 0.5) == 0.1


def test_a_full_fine_tune_is_exported_from_model_uri(root, exported, tiny_model_dir):
    job = {**export_job(root, "full", tiny_model_dir, []), "model_uri": exported["merged_uri"]}
    result = execute("export", export, job)
    assert result["formats"] == {}
    assert result["pytorch_size_bytes"] == exported["pytorch_size_bytes"]
    merged = store.local_path(result["merged_uri"]) / "model.safetensors"
    assert store.sha256_file(merged) == store.sha256_file(
        store.local_path(exported["merged_uri"]) / "model.safetensors"
    )
