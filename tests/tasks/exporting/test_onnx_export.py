from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.config.catalog import CatalogEntry
from tasks.config.export import ExportConfig
from tasks.config.scoring import ScoringConfig
from tasks.contracts.export import CheckExportResult, CheckExportSpec, ExportResult, ExportSpec
from tasks.contracts.prepare import PreparedDataset
from tasks.exporting.checks import check_export
from tasks.exporting.export_step import export
from tasks.runtime.errors import StepError
from tasks.runtime.step import execute
from tasks.storage import store
from tests.fixtures.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[3]
FORMATS = ["onnx", "onnx-int8"]
CALIBRATION = REPO / "tests" / "fixtures" / "calibration"
EARLIER = REPO / "tests" / "fixtures" / "earlier_version"
# Small calibration so the tiny model's static INT8 builds in seconds.
# 32-weight blocks: the tiny model's hidden size is 32, so its embedding can be stored in 8 bits too.
EXPORT_CONFIG = {
    "int8_block_size": 32,
    "calibration": {"dataset": str(CALIBRATION / "c4"), "samples": 8, "seq_length": 32},
}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def entry_for(model_dir: Path) -> CatalogEntry:
    return CatalogEntry(name="tiny", source={"path": str(model_dir)}, kind="uri")


def export_job(
    root: str,
    name: str,
    model_dir: Path,
    formats: list[str],
    adapter: Path | None = None,
    export_config: dict | None = None,
    dataset: PreparedDataset | None = None,
) -> ExportSpec:
    return ExportSpec(
        output=store.join(root, name, "export"),
        store_root=root,
        model=entry_for(model_dir),
        adapter_uri=store.to_uri(adapter) if adapter else None,
        formats=formats,
        export_config=EXPORT_CONFIG if export_config is None else export_config,
        dataset=dataset,
    )


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
def dataset(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("dataset")
    questions = ["Who are you?", "What do you do?", "Which format do you export?"]
    held_out = ["What is your name?", "Who made you?", "What can you do for me?", "Are you open source?"]
    for split, texts in (("test", questions), ("validation", held_out), ("train", held_out + questions)):
        rows = [
            {
                "id": f"{split}:{i}",
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ONNX."}],
            }
            for i, q in enumerate(texts)
        ]
        (directory / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return store.to_uri(directory)


def prepared(dataset: str) -> PreparedDataset:
    return PreparedDataset(
        name="qa", uri=dataset, kind="chat", counts={"train": 7, "validation": 4, "test": 3}
    )


@pytest.fixture(scope="module")
def exported(root, tiny_model_dir, adapter, dataset) -> dict:
    job = export_job(root, "good", tiny_model_dir, FORMATS, adapter, dataset=prepared(dataset))
    return execute("export", export, job)


def check_job(
    root: str, name: str, exported: dict, model_dir: Path, dataset: str, reference: dict
) -> CheckExportSpec:
    return CheckExportSpec(
        output=store.join(root, name, "check_export"),
        store_root=root,
        model=entry_for(model_dir),
        export=exported,
        dataset=prepared(dataset),
        scoring=ScoringConfig(metrics=["exact_match", "rouge_l"], primary="rouge_l", max_new_tokens=6),
        export_config=ExportConfig(),
        reference_metrics=reference,
    )


def test_export_merges_the_adapter_and_every_format_loads_and_generates(exported, tiny_model_dir, adapter):
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.scoring.generation import generate

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
    assert store.read_json(store.join(job.output, "checks.json")) == result
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
    checks = store.read_json(store.join(job.output, "checks.json"))
    assert checks["passed"] is False
    assert not store.is_committed(job.output)


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
        [sys.executable, "-m", "tasks.export", "--job", job.model_dump_json()],
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
    output = store.local_path(job.output)
    assert sorted(p.name for p in output.iterdir()) == ["manifest.json", "merged", "onnx-int8"]


def test_eval_loss_primary_gates_the_first_generation_metric_instead():
    from tasks.exporting.checks import gated_metric

    assert gated_metric(ScoringConfig(metrics=["eval_loss", "token_f1"], primary="eval_loss")) == "token_f1"
    assert gated_metric(ScoringConfig(metrics=["eval_loss"], primary="eval_loss")) is None
    assert gated_metric(ScoringConfig()) == "rouge_l"
    assert gated_metric(ScoringConfig(metrics=["perplexity", "bleu"], primary="perplexity")) == "bleu"


def test_the_metric_drop_of_a_lower_is_better_metric_is_a_rise(tmp_path, monkeypatch):
    from tasks.exporting.parity import metric_drop
    from tasks.scoring.plugins import ENV_VAR

    (tmp_path / "distance").mkdir()
    (tmp_path / "distance" / "distance.py").write_text("GREATER_IS_BETTER = False\n")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert metric_drop("rouge_l", 0.5, 0.4) == 0.1  # fell by 0.1
    assert metric_drop("distance", 0.5, 0.4) == -0.1  # fell: the export is better
    assert metric_drop("distance", 0.4, 0.5) == 0.1


def test_a_full_fine_tune_is_exported_from_model_uri(root, exported, tiny_model_dir):
    job = export_job(root, "full", tiny_model_dir, []).model_copy(
        update={"model_uri": exported["merged_uri"]}
    )
    result = execute("export", export, job)
    assert result["formats"] == {}
    assert result["pytorch_size_bytes"] == exported["pytorch_size_bytes"]
    merged = store.local_path(result["merged_uri"]) / "model.safetensors"
    assert store.sha256_file(merged) == store.sha256_file(
        store.local_path(exported["merged_uri"]) / "model.safetensors"
    )


# ------------------------------------------------------------------------------ INT8, fp16 and the gate


def forged_check(root, name, exported, fmt, directory_uri, tiny_model_dir, dataset) -> dict:
    info = {**exported["formats"][fmt], "uri": directory_uri}
    forged = {**exported, "formats": {fmt: info}}
    return check_job(root, name, forged, tiny_model_dir, dataset, reference={})


def test_every_format_directory_is_self_contained_and_committed(exported):
    from tasks.exporting.onnx_fp import weights_size

    for fmt in FORMATS:
        directory = store.local_path(exported["formats"][fmt]["uri"])
        names = {p.name for p in directory.iterdir()}
        assert {
            "model.onnx",
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "manifest.json",
        } <= names
        uri = exported["formats"][fmt]["uri"]
        assert store.verify(uri) == []
        manifest = store.read_json(store.join(uri, "manifest.json"))
        assert "model.onnx" in manifest["files"] and manifest["result"]["size_bytes"] == weights_size(
            directory
        )
    assert exported["formats"]["onnx-int8"]["size_bytes"] < exported["formats"]["onnx"]["size_bytes"]


def test_auto_int8_builds_both_and_records_which_it_kept_and_why(exported):
    int8 = exported["formats"]["onnx-int8"]
    assert int8["int8_mode"] == "auto" and int8["kept"] in ("static", "dynamic")
    scores = int8["holdout"]["agreement_with_fp32"]
    assert set(scores) == {"static", "dynamic"} and all(0 <= v <= 1 for v in scores.values())
    assert int8["holdout"]["source"] == "qa validation split" and int8["holdout"]["rows"] == 4
    better = "static" if scores["static"] >= scores["dynamic"] else "dynamic"
    assert int8["kept"] == better and f"static {scores['static']:.4f}" in int8["reason"]
    assert int8["calibration"]["format"] == "c4" and int8["calibration"]["windows"] == 8
    assert int8["calibration"]["seq_length"] == 32 and int8["calibration"]["texts"] == 6
    assert int8["static"]["excluded_from_activation_quantization"] == [
        "/model/layers.0/mlp/down_proj/MatMul",
        "/model/layers.1/mlp/down_proj/MatMul",
    ]
    assert int8["dynamic"]["embedding"] == "int8, shared with lm_head"


def test_the_auto_rule_keeps_static_unless_it_is_worse():
    from tasks.exporting.int8 import choose_int8

    assert choose_int8(0.9, 0.9, 4)[0] == "static"
    assert choose_int8(0.91, 0.9, 4)[0] == "static"
    kept, reason = choose_int8(0.5, 0.9, 4)
    assert kept == "dynamic" and reason.endswith("static is worse: fell back to dynamic")


def test_static_int8_is_qdq_with_8_bit_weights_everywhere_and_generates(root, tiny_model_dir, dataset):
    import onnx
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoTokenizer

    from tasks.scoring.generation import generate

    config = {**EXPORT_CONFIG, "int8_mode": "static"}
    job = export_job(
        root, "static", tiny_model_dir, ["onnx-int8"], export_config=config, dataset=prepared(dataset)
    )
    int8 = execute("export", export, job)["formats"]["onnx-int8"]
    assert int8["kept"] == "static" and "holdout" not in int8 and "dynamic" not in int8
    directory = store.local_path(int8["uri"])
    ops = [node.op_type for node in onnx.load(directory / "model.onnx").graph.node]
    # q/k/v/o/gate/up of 2 layers through calibrated QDQ; down_proj x2 and lm_head as 8-bit weights only.
    assert ops.count("QuantizeLinear") >= 12 and ops.count("DequantizeLinear") >= 12
    assert ops.count("MatMulNBits") == 3 == int8["static"]["weight_only_matmuls"]
    assert ops.count("GatherBlockQuantized") == 1
    model = ORTModelForCausalLM.from_pretrained(directory)
    answers, stats = generate(model, AutoTokenizer.from_pretrained(directory), ["Who are you?"], 4, 1)
    assert len(answers) == 1 and stats["generated_tokens"] > 0


def test_auto_falls_back_to_dynamic_when_static_calibrates_on_degenerate_text(
    root, tiny_model_dir, dataset, tmp_path
):
    """Calibration text of one token whose embedding is zero (think padding): every activation static
    INT8 measures is 0, so its ranges fit nothing real, and auto must keep dynamic. The projections are
    scaled up so that the layers, not the embedding carried by the residual, decide the next token (at
    random initialisation they barely do, and any INT8 graph would agree with fp32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.pad_token_id] = 0
        for name, weight in model.named_parameters():
            if name.endswith("proj.weight"):
                weight.mul_(10)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    degenerate = tmp_path / "c4-padding.jsonl"
    degenerate.write_text(json.dumps({"text": tokenizer.pad_token * 400, "timestamp": "", "url": ""}) + "\n")
    config = {"calibration": {"dataset": str(degenerate), "samples": 8, "seq_length": 32}}
    job = export_job(
        root, "degenerate", tmp_path / "model", ["onnx-int8"], export_config=config, dataset=prepared(dataset)
    )
    int8 = execute("export", export, job)["formats"]["onnx-int8"]
    scores = int8["holdout"]["agreement_with_fp32"]
    assert scores["static"] < scores["dynamic"]
    assert int8["kept"] == "dynamic" and "fell back to dynamic" in int8["reason"]


def test_the_gate_refuses_an_int8_export_with_corrupted_weights(
    root, exported, tiny_model_dir, dataset, tmp_path
):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from tasks.exporting.onnx_fp import copy_sidecars

    source = store.local_path(exported["formats"]["onnx-int8"]["uri"])
    model = onnx.load(source / "model.onnx")
    weights = {n.input[1] for n in model.graph.node if n.op_type == "MatMulNBits"}
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name in weights:  # the same bytes, scrambled: a truncated or mangled upload
            scrambled = np.random.default_rng(0).permutation(numpy_helper.to_array(tensor).ravel())
            model.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(scrambled.reshape(tensor.dims), tensor.name)
            )
    broken = tmp_path / "onnx-int8"
    copy_sidecars(source, broken)
    onnx.save(model, broken / "model.onnx")
    job = forged_check(root, "corrupt", exported, "onnx-int8", store.to_uri(broken), tiny_model_dir, dataset)
    with pytest.raises(
        StepError, match=r"onnx-int8: position_agreement [0-9.]+ < 0\.6 \(its greedy tokens differ"
    ):
        execute("check_export", check_export, job)
    assert store.read_json(store.join(job.output, "checks.json"))["passed"] is False


def test_the_gate_refuses_a_static_int8_export_of_a_different_model(
    root, exported, tiny_model_dir, dataset, tmp_path
):
    other = build_tiny_model(tmp_path / "other", seed=2)
    config = {**EXPORT_CONFIG, "int8_mode": "static"}
    impostor = execute(
        "export", export, export_job(root, "impostor-int8", other, ["onnx-int8"], export_config=config)
    )
    assert impostor["formats"]["onnx-int8"]["kept"] == "static"
    uri = impostor["formats"]["onnx-int8"]["uri"]
    job = forged_check(root, "impostor-int8", exported, "onnx-int8", uri, tiny_model_dir, dataset)
    with pytest.raises(StepError, match=r"onnx-int8: position_agreement [0-9.]+ < 0\.6"):
        execute("check_export", check_export, job)


def test_the_calibration_reader_feeds_the_exported_decoder(exported, tiny_model_dir):
    import onnxruntime
    from transformers import AutoTokenizer

    from tasks.config.export import CalibrationConfig
    from tasks.exporting.calibration import calibration_reader, load_texts, windows

    path = store.local_path(exported["formats"]["onnx"]["uri"]) / "model.onnx"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = load_texts(CalibrationConfig(dataset=str(CALIBRATION / "ceval"))).texts
    reader = calibration_reader(path, windows(texts, tokenizer, count=3, seq_length=24, seed=0))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = []
    while (feed := reader.get_next()) is not None:
        assert feed["past_key_values.0.key"].shape == (1, 2, 0, 8)  # batch 1, 2 kv heads, no past
        shapes.append(session.run(["logits"], feed)[0].shape)
    assert shapes == [(1, 24, 512)] * 3


def test_export_formats_works_on_any_merged_directory_and_reuses_a_committed_format(tiny_model_dir, tmp_path):
    from optimum.onnxruntime import ORTModelForCausalLM

    from tasks.exporting.export_step import export_formats

    first = export_formats(tiny_model_dir, tmp_path, ["onnx-int8"], {"int8_mode": "dynamic"})["formats"]
    int8 = first["onnx-int8"]
    assert int8["kept"] == "dynamic" and int8["reason"] == "int8_mode is dynamic"
    # The default 64-weight blocks do not divide the tiny hidden size: the embedding stays fp32, said so.
    assert int8["dynamic"]["embedding"] == "fp32 (hidden size 32 is not a multiple of int8_block_size 64)"
    assert ORTModelForCausalLM.from_pretrained(tmp_path / "onnx-int8") is not None
    assert (
        int8["path"] == str(tmp_path / "onnx-int8") and (tmp_path / "onnx-int8" / "manifest.json").is_file()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx-int8"]
    stamp = (tmp_path / "onnx-int8" / "model.onnx").stat().st_mtime_ns
    again = export_formats(tiny_model_dir, tmp_path, ["onnx-int8"], {"int8_mode": "dynamic"})["formats"]
    assert again == first and (tmp_path / "onnx-int8" / "model.onnx").stat().st_mtime_ns == stamp


def test_static_int8_without_calibration_data_is_refused_and_auto_keeps_dynamic(tiny_model_dir, tmp_path):
    from tasks.exporting.export_step import export_formats

    with pytest.raises(
        StepError, match=r"static INT8 needs calibration data: .*no prepared dataset was given"
    ):
        export_formats(tiny_model_dir, tmp_path / "a", ["onnx-int8"], {"int8_mode": "static"})
    int8 = export_formats(tiny_model_dir, tmp_path / "b", ["onnx-int8"], {})["formats"]["onnx-int8"]
    assert int8["kept"] == "dynamic" and int8["reason"].startswith("static not built: calibration.dataset")


@pytest.mark.skipif(cuda_available(), reason="checks the refusal on a machine without CUDA")
def test_fp16_is_refused_where_no_cuda_device_exists(root, tiny_model_dir):
    with pytest.raises(
        StepError, match=r"onnx-fp16 is exported on a CUDA device .* torch sees no CUDA device"
    ):
        export(export_job(root, "fp16-cpu", tiny_model_dir, ["onnx-fp16"]))


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
def test_fp16_is_exported_on_cuda_and_checked_there(root, tiny_model_dir, dataset):
    job = export_job(root, "fp16", tiny_model_dir, ["onnx", "onnx-fp16"], dataset=prepared(dataset))
    exported = execute("export", export, job)
    fp16 = exported["formats"]["onnx-fp16"]
    assert fp16["device"] == "cuda" and fp16["dtype"] == "fp16"
    assert fp16["size_bytes"] < exported["formats"]["onnx"]["size_bytes"] * 0.6
    result = execute(
        "check_export", check_export, check_job(root, "fp16", exported, tiny_model_dir, dataset, {})
    )
    checks = result["formats"]["onnx-fp16"]
    assert checks["latency"]["device"] == "cuda" and result["pytorch"]["latency_cuda"]["device"] == "cuda"
    assert checks["max_logit_diff"] <= 0.5 and checks["passed"]


def test_export_and_check_export_specs_stored_by_an_earlier_version_run_through_the_steps(
    root, tiny_model_dir, adapter, dataset
):
    """The specs select_best wrote in an earlier version, their model, weights and rows moved to the tiny
    ones (and fp32 ONNX alone): export runs with the stored export settings, and check_export finds the
    export by its stored `export_output` and, given no reference metrics, scores the PyTorch model itself."""
    moved = {
        "store_root": root,
        "model": entry_for(tiny_model_dir).model_dump(mode="json"),
        "dataset": prepared(dataset).model_dump(mode="json"),
    }
    stored = json.loads((EARLIER / "export_spec.json").read_text())
    export_spec = ExportSpec.load(
        {
            **stored,
            **moved,
            "output": store.join(root, "earlier", "export"),
            "adapter_uri": store.to_uri(adapter),
            "formats": ["onnx"],
        },
        "export_spec.json",
    )
    exported = ExportResult.load(execute("export", export, export_spec, ExportResult), "the export")
    assert list(exported.formats) == ["onnx"]
    stored = json.loads((EARLIER / "check_export_spec.json").read_text())
    check_spec = CheckExportSpec.load(
        {
            **stored,
            **moved,
            "output": store.join(root, "earlier", "check_export"),
            "export_output": export_spec.output,
            "reference_metrics": {},
        },
        "check_export_spec.json",
    )
    assert check_spec.export is None and check_spec.scoring.max_new_tokens == 24
    result = CheckExportResult.load(
        execute("check_export", check_export, check_spec, CheckExportResult), "the checks"
    )
    assert result.passed and set(result.reference_metrics) == {"exact_match", "rouge_l"}
    assert store.read_json(store.join(check_spec.output, "checks.json")) == result.model_dump(mode="json")
