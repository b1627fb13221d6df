"""validate_conf, the first task of a run, given hostile confs (tests/fixtures/hostile_confs.py) on a fresh
local store with the api-server's default allowed paths: each conf is accepted, or refused with
`ConfError` naming a field and leaving no file in the store (no half-created run)."""

from __future__ import annotations

import itertools

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tasks.config import allowed_paths
from tasks.config.base import ConfError
from tasks.pipeline.plan import validate_conf
from tests.fixtures.hostile_confs import TRAVERSAL, example_confs, mutated
from tests.tasks.config.test_hostile_confs import SETTINGS, names_a_field, refusal_lines

COUNTER = itertools.count()


@st.composite
def pointed_elsewhere(draw: st.DrawFn) -> dict:
    """An example conf whose dataset or model points at a traversal string."""
    conf = draw(example_confs())
    if "datasets" not in conf:
        return conf
    where = draw(st.sampled_from(["uri", "train_uri", "sources", "model", "eval"]))
    target = draw(st.sampled_from(TRAVERSAL))
    dataset = {"name": "tuna"}
    if where == "model":
        conf["models"] = [{"name": "mine", "uri": target}]
    elif where == "eval":
        conf["scoring"] = {**conf.get("scoring", {}), "eval_dataset": {"name": "held", "uri": target}}
    elif where == "sources":
        conf["datasets"] = [{**dataset, "sources": [{"uri": "builtin:tuna_identity"}, {"uri": target}]}]
    else:
        conf["datasets"] = [{**dataset, where: target}]
    return conf


def _store_files(root) -> list:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@settings(max_examples=300, **SETTINGS)
# Unmutated example confs too, so that the accepted path (specs written to the store) is exercised.
@given(st.one_of(example_confs(), mutated(example_confs()), pointed_elsewhere()))
def test_a_hostile_conf_is_accepted_or_refused_naming_a_field_with_nothing_written(tmp_path_factory, conf):
    base = tmp_path_factory.getbasetemp() / "hostile-stores" / str(next(COUNTER))
    root = (base / "store").as_uri()
    roots = allowed_paths.server_defaults(root)
    try:
        validate_conf(conf, "manual__fuzz", root, allowed_roots=roots)
        event("validate_conf: accepted")
    except ConfError as error:
        event("validate_conf: refused" + (" (outside allowed paths)" if "outside" in str(error) else ""))
        for line in refusal_lines(error):
            assert names_a_field(line, conf), f"a refusal line names no field: {line[:200]!r}"
        assert _store_files(base / "store") == [], "a refused conf left files in the store"
