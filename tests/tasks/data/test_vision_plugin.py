"""A user's data-format plugin that yields vision rows (an image and a question/answer in the user's own
shape) prepares like the built-in vision formats: kind vision, images resolved beside the dataset file and
checked (a missing one dropped as `missing_image`), image tokens counted; and the prepared rows train the
tiny LLaVA."""

from __future__ import annotations

import json
import textwrap

import pytest

from tasks.data import plugins as data_plugins
from tests.fixtures.tiny_llava import IMAGE_SIZE, build_tiny_llava, write_images
from tests.tasks.training.test_train_types import make_job, train_and_compare, trainer_for

PLUGIN = '''
"""A photo quiz: {"photo": path, "q": question, "a": answer}."""
from tasks.data.plugins import data_format
from tasks.data.rows import RowError


@data_format(name="photo_quiz", kind="vision", keys=("photo", "q", "a"), detect=lambda r: "photo" in r)
def photo_quiz(record):
    if not record.get("photo"):
        raise RowError("missing_image", "photo is empty")
    return {
        "messages": [
            {"role": "user", "content": "<image>\\n" + record["q"]},
            {"role": "assistant", "content": record["a"]},
        ],
        "images": [record["photo"]],
    }
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """The plugin found through $TUNERFLOW_DATA_PLUGINS, as a deployment would add it."""
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "photo_quiz.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.setenv(data_plugins.ENV_VAR, str(directory))
    data_plugins._reset_for_tests()
    yield directory
    data_plugins._reset_for_tests()


def test_a_plugin_format_of_kind_vision_prepares_and_trains_the_tiny_llava(plugin_dir, tmp_path):
    from tasks.contracts.prepare import PrepareSpec
    from tasks.data.format_detection import detect_format
    from tasks.data.preparation import prepare
    from tasks.storage import store

    model = build_tiny_llava(tmp_path / "model")
    data = tmp_path / "data"
    records = []
    for row in write_images(data / "photos"):
        color, shape = row["conversations"][1]["value"].removeprefix("Tuna sees a ").rstrip(".").split()
        # Relative to the dataset file, as a user's export would hold them.
        photo = f"photos/{color}_{shape}.png"
        records.append({"photo": photo, "q": "What does Tuna see?", "a": f"A {color} {shape}."})
    records.append({"photo": "photos/lost.png", "q": "And this?", "a": "Nothing."})
    records.append({"photo": "", "q": "No photo?", "a": "None."})
    (data / "quiz.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    assert detect_format(records[0]) == "photo_quiz"
    entry = {"name": "tiny-llava", "source": {"path": str(model)}, "kind": "uri"}
    dataset = {
        "name": "quiz",
        "uri": str(data / "quiz.jsonl"),
        "format": "photo_quiz",
        "split": "75,25,0",
        "max_tokens": 64,
        "max_drop_ratio": 0.5,
    }
    spec = PrepareSpec(store_root=(tmp_path / "store").as_uri(), dataset=dataset, tokenizers=[entry])
    result = prepare(spec)
    print("prepared", result["counts"], result["drop_reasons"])
    assert result["kind"] == "vision" and result["format"] == "photo_quiz"
    assert result["drop_reasons"] == {"missing_image": 2} and sum(result["counts"].values()) == 8
    out = store.local_path(result["uri"])
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    for row in train:
        (uri,) = row["images"]
        assert uri.startswith("file://") and store.local_path(uri).is_file()
        assert row["image_sizes"] == [[IMAGE_SIZE, IMAGE_SIZE]]
        assert row["messages"][0]["content"].startswith("<image>\n")
    report = json.loads((out / "validation_report.json").read_text())
    assert report["image_tokens"] == {"tiny-llava": (IMAGE_SIZE // 8) ** 2}

    hp = {"learning_rate": 1e-2, "max_steps": 3, "batch_size": 2, "micro_batch_size": 2, "max_seq_length": 64}
    job = make_job(tmp_path, model, out, "vision", "vlm_sft", "lora", **hp)
    trainer, _ = trainer_for(job, tmp_path)
    assert len(trainer.train_dataset) == len(train)  # every prepared row fits and trains
    run = train_and_compare(trainer)
    print("photo_quiz vlm_sft losses", [round(loss, 3) for loss in run["losses"]])
    assert len(run["losses"]) == 3 and 0 < run["losses"][-1] < run["losses"][0]
    assert any("lora_" in name and "language_model" in name for name in run["moved"])
    assert any("multi_modal_projector" in name for name in run["moved"])
    assert not any("vision_tower" in name for name in run["moved"])
