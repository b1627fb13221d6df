"""A prompt-learning adapter reaching the export step (a spec written by hand: the conf validator refuses
such an export) is refused with the reason, before anything is written."""

from __future__ import annotations

import pytest

from tasks.config.catalog import CatalogEntry
from tasks.exporting.export_step import merge
from tasks.runtime.errors import StepError


def test_export_refuses_a_prompt_tuning_adapter(tiny_model_dir, tmp_path):
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        PromptTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"),
    )
    model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    entry = CatalogEntry.model_validate(
        {"name": "tiny", "source": {"path": str(tiny_model_dir)}, "kind": "uri"}
    )
    with pytest.raises(StepError, match=r"prompt-learning adapter .* virtual tokens are not weights"):
        merge(entry, tmp_path.as_uri(), tmp_path / "merged", adapter_uri=(tmp_path / "adapter").as_uri())
    assert not (tmp_path / "merged").exists()
