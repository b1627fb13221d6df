from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.config.dataset import DatasetConfig


def test_dedup_modes_accept_the_old_booleans_and_dump_as_stored():
    assert DatasetConfig(name="d", uri="x.jsonl").dedup == "exact"
    assert DatasetConfig(name="d", uri="x.jsonl", dedup=True).dedup == "exact"
    off = DatasetConfig(name="d", uri="x.jsonl", dedup=False)
    assert off.dedup == "none"
    # exact/none are stored as true/false without the near settings: earlier specs dump back unchanged.
    dumped = off.model_dump(mode="json")
    assert dumped["dedup"] is False and "near_dedup_threshold" not in dumped
    near = DatasetConfig(name="d", uri="x.jsonl", dedup="near", near_dedup_threshold=0.7)
    assert near.model_dump(mode="json")["dedup"] == "near"
    assert DatasetConfig.model_validate(near.model_dump(mode="json")) == near


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"dedup": "near", "near_dedup_threshold": 0},
            "near_dedup_threshold\n  Input should be greater than 0",
        ),
        ({"dedup": "near", "near_dedup_threshold": 1.5}, "less than or equal to 1"),
        ({"near_dedup_threshold": 0.7}, "near_dedup_threshold only apply with dedup: near"),
        ({"dedup": "fuzzy"}, "Input should be 'exact', 'near' or 'none'"),
    ],
)
def test_bad_dedup_settings_name_the_field(fields, message):
    with pytest.raises(ValidationError) as error:
        DatasetConfig(name="d", uri="x.jsonl", **fields)
    assert message in str(error.value)
