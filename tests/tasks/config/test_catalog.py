"""tasks.config.catalog: the catalog is the allowlist for remote code, pinned to a reviewed commit."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.config.catalog import CatalogEntry, models, pretrained_kwargs, resolve_model
from tasks.config.models import ModelConfig

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def entry(**fields) -> CatalogEntry:
    return CatalogEntry.model_validate({"name": "m", "source": {"hub": "org/m"}, **fields})


def test_remote_code_without_a_pin_is_listed_but_refused_when_used():
    unpinned = entry(trust_remote_code=True)
    with pytest.raises(ValueError, match="pins `revision` to a reviewed 40-character commit hash"):
        pretrained_kwargs(unpinned)


def test_a_conf_naming_an_unpinned_remote_code_model_is_refused():
    listed = [name for name, e in models().items() if e.trust_remote_code and e.revision is None]
    assert listed, "the shipped catalog lists a remote-code model to show the refusal"
    with pytest.raises(ValueError, match=f"model '{listed[0]}' needs trust_remote_code"):
        resolve_model(ModelConfig(name=listed[0]))


def test_a_branch_or_tag_is_not_a_pin():
    with pytest.raises(ValidationError, match="revision 'main' is not a commit hash"):
        entry(trust_remote_code=True, revision="main")


def test_remote_code_only_for_a_catalog_hub_model():
    with pytest.raises(ValidationError, match="only allowed for a hub model listed in the catalog"):
        entry(trust_remote_code=True, revision=COMMIT, kind="uri")
    with pytest.raises(ValidationError, match="only allowed for a hub model listed in the catalog"):
        CatalogEntry.model_validate(
            {"name": "m", "source": {"path": "/models/m"}, "trust_remote_code": True, "revision": COMMIT}
        )


def test_an_allowlisted_entry_loads_its_pinned_code_and_safetensors_only():
    assert pretrained_kwargs(entry(trust_remote_code=True, revision=COMMIT)) == {
        "use_safetensors": True,
        "trust_remote_code": True,
        "revision": COMMIT,
    }


def test_every_other_model_loads_safetensors_only_without_remote_code():
    assert pretrained_kwargs(entry()) == {"use_safetensors": True, "trust_remote_code": False}
    for name, catalog_entry in models().items():
        if catalog_entry.trust_remote_code:
            continue
        kwargs = pretrained_kwargs(catalog_entry)
        assert kwargs["use_safetensors"] is True, name
        assert kwargs["trust_remote_code"] is False, name


def test_a_user_given_uri_never_runs_remote_code():
    resolved = resolve_model(ModelConfig(name="mine", uri="hf:org/mine"))
    assert resolved.kind == "uri" and resolved.trust_remote_code is False
    with pytest.raises(ValidationError):
        CatalogEntry.model_validate({**resolved.model_dump(), "trust_remote_code": True, "revision": COMMIT})
