"""tasks.exporting.gguf_export and gguf_checks: GGUF files and an Ollama Modelfile of a llama-family model,
loaded back with transformers' GGUF loader and checked against the PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.config.catalog import CatalogEntry, resolve_experiment
from tasks.config.experiment import parse_experiment
from tasks.config.export import ExportConfig
from tasks.config.scoring import ScoringConfig
from tasks.contracts.export import CheckExportSpec, ExportSpec
from tasks.contracts.prepare import PreparedDataset
from tasks.exporting.checks import check_export
from tasks.exporting.export_step import export
from tasks.runtime.errors import StepError
from tasks.runtime.step import execute
from tasks.storage import store
from tests.fixtures.tiny_model import build_tiny_model

CHAT = [
    {"role": "system", "content": "You are Tuna."},
    {"role": "user", "content": "Who are you? Count 1, 22, 333."},
    {"role": "assistant", "content": "I am Tuna, a fine-tuned model."},
]
TINY_MODELFILE = (
    "FROM ./tiny-q8_0.gguf\n"
    'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
    '<|im_start|>assistant\n"""\n'
    'PARAMETER stop "<|im_end|>"\n'
    'PARAMETER stop "<|im_start|>"\n'
)


def entry_for(model_dir: Path, name: str = "tiny") -> CatalogEntry:
    return CatalogEntry(name=name, source={"path": str(model_dir)}, kind="uri")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return tmp_path_factory.mktemp("store").as_uri()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> PreparedDataset:
    directory = tmp_path_factory.mktemp("dataset")
    for split, texts in (("test", ["Who are you?", "What do you do?"]), ("validation", ["Hi"])):
        rows = [
            {
                "id": f"{split}:{i}",
                "messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "Tuna."}],
            }
            for i, t in enumerate(texts)
        ]
        (directory / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return PreparedDataset(
        name="qa", uri=store.to_uri(directory), kind="chat", counts={"train": 0, "validation": 1, "test": 2}
    )


def export_job(root: str, name: str, entry: CatalogEntry) -> ExportSpec:
    return ExportSpec(
        output=store.join(root, name, "export"),
        store_root=root,
        model=entry,
        formats=["gguf"],
        export_config=ExportConfig(formats=["gguf"]),
    )


def check_job(
    root: str, name: str, exported: dict, entry: CatalogEntry, dataset, **limits
) -> CheckExportSpec:
    return CheckExportSpec(
        output=store.join(root, name, "check_export"),
        store_root=root,
        model=entry,
        export=exported,
        dataset=dataset,
        scoring=ScoringConfig(metrics=["exact_match", "rouge_l"], primary="rouge_l", max_new_tokens=6),
        export_config=ExportConfig(formats=["gguf"], **limits),
    )


@pytest.fixture(scope="module")
def exported(root, tiny_model_dir) -> dict:
    return execute("export", export, export_job(root, "good", entry_for(tiny_model_dir)))


def gguf_dir(exported: dict) -> Path:
    return store.local_path(exported["formats"]["gguf"]["uri"])


def test_gguf_export_writes_f16_q8_0_and_a_modelfile_committed_with_the_manifest(exported, tiny_model_dir):
    from gguf import GGMLQuantizationType, GGUFReader
    from transformers import AutoTokenizer

    info = exported["formats"]["gguf"]
    directory = gguf_dir(exported)
    assert sorted(p.name for p in directory.iterdir()) == [
        "Modelfile",
        "manifest.json",
        "tiny-f16.gguf",
        "tiny-q8_0.gguf",
    ]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert {"Modelfile", "tiny-f16.gguf", "tiny-q8_0.gguf"} <= set(json.dumps(manifest).split('"'))
    files = info["files"]
    assert info["size_bytes"] == files["f16"]["size_bytes"] + files["q8_0"]["size_bytes"]
    assert files["q8_0"]["size_bytes"] < 0.7 * files["f16"]["size_bytes"]
    assert info["ollama_serves"] == "q8_0"

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for gguf_type, weight_type in (("f16", GGMLQuantizationType.F16), ("q8_0", GGMLQuantizationType.Q8_0)):
        reader = GGUFReader(directory / f"tiny-{gguf_type}.gguf")
        fields = {
            name: field.contents() for name, field in reader.fields.items() if name != "tokenizer.ggml.merges"
        }
        assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 2
        assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt2"
        assert fields["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
        assert fields["tokenizer.ggml.padding_token_id"] == tokenizer.pad_token_id
        assert fields["tokenizer.chat_template"] == tokenizer.chat_template
        # Trained on the template's text alone: llama.cpp must not prepend a BOS of its own.
        assert (
            fields["tokenizer.ggml.add_bos_token"] is False
            and fields["tokenizer.ggml.add_eos_token"] is False
        )
        assert fields["tokenizer.ggml.token_type"][:3] == [3, 3, 3]  # the ChatML specials are control tokens
        types = {tensor.name: tensor.tensor_type for tensor in reader.tensors}
        assert "output.weight" not in types  # tied to token_embd, as llama.cpp writes it
        assert types["blk.0.attn_q.weight"] == weight_type == types["token_embd.weight"]
        assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32


@pytest.mark.parametrize(("gguf_type", "tolerance"), [("f16", 2e-3), ("q8_0", 2e-2)])
def test_loading_a_gguf_file_back_gives_the_pytorch_logits(exported, tiny_model_dir, gguf_type, tolerance):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_dir(exported), gguf_file=f"tiny-{gguf_type}.gguf", dtype=torch.float32
    ).eval()
    with torch.inference_mode():
        expected, got = reference(**batch).logits, loaded(**batch).logits
    difference = float((expected - got).abs().max())
    assert difference < tolerance
    # Not equal by accident: the weights really were rounded on the way.
    assert difference > 0


def test_the_gguf_tokenizer_round_trips_a_chat(exported, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    loaded = AutoTokenizer.from_pretrained(gguf_dir(exported), gguf_file="tiny-q8_0.gguf")
    assert loaded.chat_template == tokenizer.chat_template
    text = tokenizer.apply_chat_template(CHAT, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert loaded(text, add_special_tokens=False)["input_ids"] == ids
    assert loaded.decode(ids) == text
    assert loaded.apply_chat_template(CHAT, tokenize=False) == text


def test_the_modelfile_serves_q8_0_with_a_chatml_template_and_stop_tokens(exported):
    assert (gguf_dir(exported) / "Modelfile").read_text() == TINY_MODELFILE


def test_a_template_that_adds_its_own_system_prompt_becomes_ollama_system(tiny_model_dir):
    from transformers import AutoTokenizer

    from tasks.exporting.gguf_export import modelfile

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # SmolLM2's pattern: a default system turn when the conversation has none.
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are helpful.<|im_end|>\n{% endif %}"
        + tokenizer.chat_template
    )
    text = modelfile(tokenizer, "m-q8_0.gguf")
    assert text.startswith("FROM ./m-q8_0.gguf\nTEMPLATE ")
    assert 'SYSTEM """You are helpful."""\n' in text


def test_a_chat_template_that_is_not_chatml_is_refused_and_none_means_raw_completion(tiny_model_dir):
    from transformers import AutoTokenizer

    from tasks.exporting.gguf_export import modelfile

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(StepError, match=r"TEMPLATE is written for ChatML-like chat templates .* remove gguf"):
        modelfile(tokenizer, "m-q8_0.gguf")
    tokenizer.chat_template = None
    assert modelfile(tokenizer, "m-f16.gguf") == 'FROM ./m-f16.gguf\nPARAMETER stop "<|im_end|>"\n'


def test_check_export_passes_the_gguf_files_and_reports_each(root, exported, tiny_model_dir, dataset):
    result = execute(
        "check_export", check_export, check_job(root, "good", exported, entry_for(tiny_model_dir), dataset)
    )
    assert result["passed"] and sorted(result["formats"]) == ["gguf-f16", "gguf-q8_0"]
    for name, checks in result["formats"].items():
        assert checks["passed"] and not checks["problems"], name
        assert checks["greedy_agreement"] == 1.0 and checks["tokenizer_agreement"] == 1.0
        assert checks["greedy_identical_prompts"] == 12
        assert checks["next_token_agreement"] == 1.0 and checks["uri"].endswith(f"tiny-{name[5:]}.gguf")
        assert 0 < checks["size_ratio"] < 1 and set(checks["metrics"]) == {"exact_match", "rouge_l"}
    assert result["formats"]["gguf-f16"]["max_logit_diff"] < 2e-3


def test_check_export_refuses_the_gguf_of_a_different_model(
    root, exported, tiny_model_dir, dataset, tmp_path
):
    import torch
    from transformers import AutoModelForCausalLM

    other = build_tiny_model(tmp_path / "other", seed=3)
    # At random initialisation a tied tiny model mostly repeats its last token whatever its weights; scaled
    # projections make the layers decide, so the impostor's greedy tokens are its own.
    model = AutoModelForCausalLM.from_pretrained(other)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if name.endswith("proj.weight"):
                weight.mul_(10)
    model.save_pretrained(other)
    impostor = execute("export", export, export_job(root, "impostor", entry_for(other)))
    forged = {**exported, "formats": impostor["formats"]}
    job = check_job(root, "impostor", forged, entry_for(tiny_model_dir), dataset)
    with pytest.raises(StepError) as raised:
        execute("check_export", check_export, job)
    message = str(raised.value)
    assert "gguf-f16: max_logit_diff" in message and "> 0.1" in message
    assert "gguf-q8_0: greedy_agreement" in message
    assert store.read_json(store.join(job.output, "checks.json"))["passed"] is False


def test_a_model_that_is_not_llama_is_refused_by_the_export_step(root, tiny_model_dir, tmp_path):
    import shutil

    model = tmp_path / "not-llama"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    from tasks.exporting.gguf_export import export_gguf

    with pytest.raises(StepError, match=r"llama-family models only .* model_type is 'mistral'"):
        export_gguf(model, tmp_path / "out", ["f16"], "m")


def test_a_conf_asking_gguf_for_a_model_that_is_not_llama_is_refused_at_validation():
    conf = {
        "name": "exp",
        "datasets": [{"name": "d", "uri": "builtin:tuna_identity", "split": "98,2,0"}],
        "models": [{"name": "smollm2-135m-instruct"}, {"name": "qwen2.5-0.5b-instruct"}],
        "hparams": [{"preset": "lora-fast"}],
        "export": {"formats": ["onnx", "gguf"]},
    }
    with pytest.raises(ValueError) as raised:
        resolve_experiment(parse_experiment(conf))
    message = str(raised.value)
    assert message.startswith("export.formats: gguf is written for llama-family models only")
    assert "model 'qwen2.5-0.5b-instruct' is family 'qwen2'" in message and "smollm2" not in message
    conf["models"] = conf["models"][:1]
    export = resolve_experiment(parse_experiment(conf))["experiment"]["export"]
    assert ExportConfig.model_validate(export).gguf_types == ["f16", "q8_0"]


def test_gguf_is_not_a_default_format_and_gguf_types_are_validated():
    assert "gguf" not in ExportConfig().formats
    with pytest.raises(ValueError, match=r"export\.gguf_types: list each GGUF type once"):
        ExportConfig(formats=["gguf"], gguf_types=["q8_0", "q8_0"])
    with pytest.raises(ValueError, match="gguf_types"):
        ExportConfig(gguf_types=["q4_0"])


def test_the_pre_tokenizer_is_named_as_llama_cpp_knows_it_or_refused():
    from tasks.exporting.gguf_export import pre_tokenizer_name

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert pre_tokenizer_name({"pre_tokenizer": byte_level}) == "gpt2"
    digits = {"type": "Digits", "individual_digits": True}
    assert (
        pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [digits, byte_level]}})
        == "smollm"
    )
    split = {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"}}
    llama3 = {"type": "Sequence", "pretokenizers": [split, {**byte_level, "use_regex": False}]}
    assert pre_tokenizer_name({"pre_tokenizer": llama3}) == "llama-bpe"
    with pytest.raises(StepError, match=r"pre-tokenizer \(Metaspace\) is not one llama\.cpp knows"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}})
