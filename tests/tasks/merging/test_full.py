"""Full fine-tunes merged as task vectors or by SLERP, checked against tensors computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tasks.merging.full import merge_models, slerp
from tasks.runtime.errors import StepError
from tests.tasks.merging.parts import make_fine_tune, ties_by_hand

NAMES = ("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight")


@pytest.fixture(scope="module")
def fine_tunes(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fine_tunes")
    base = {
        n: p.detach().clone()
        for n, p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters()
    }
    first = make_fine_tune(tiny_model_dir, root / "first", seed=1)
    second = make_fine_tune(tiny_model_dir, root / "second", seed=2)
    return root, base, first, second


def _merged(base_dir, root, weights, method, density=0.5):
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    merge_models(model, [root / "first", root / "second"], ["first", "second"], weights, method, density)
    return dict(model.named_parameters())


def test_linear_adds_the_weighted_task_vectors_to_the_base(tiny_model_dir, fine_tunes):
    root, base, first, second = fine_tunes
    merged = _merged(tiny_model_dir, root, [0.6, 0.4], "linear")
    for name in NAMES:
        expected = base[name] + 0.6 * (first[name] - base[name]) + 0.4 * (second[name] - base[name])
        torch.testing.assert_close(merged[name].detach(), expected)


def test_ties_adds_the_trimmed_sign_elected_mean_of_the_task_vectors(tiny_model_dir, fine_tunes):
    root, base, first, second = fine_tunes
    merged = _merged(tiny_model_dir, root, [1.0, 1.0], "ties", density=0.3)
    for name in NAMES:
        vectors = [first[name] - base[name], second[name] - base[name]]
        expected = base[name] + ties_by_hand(vectors, [1.0, 1.0], 0.3)
        torch.testing.assert_close(merged[name].detach(), expected)


def test_dare_is_the_same_for_the_same_seed(tiny_model_dir, fine_tunes):
    root, _, _, _ = fine_tunes
    torch.manual_seed(7)
    once = _merged(tiny_model_dir, root, [0.5, 0.5], "dare_ties")
    torch.manual_seed(7)
    again = _merged(tiny_model_dir, root, [0.5, 0.5], "dare_ties")
    torch.manual_seed(8)
    other = _merged(tiny_model_dir, root, [0.5, 0.5], "dare_ties")
    name = NAMES[1]
    assert torch.equal(once[name], again[name]) and not torch.equal(once[name], other[name])


def test_slerp_of_two_fine_tunes_follows_the_arc_between_them(tiny_model_dir, fine_tunes):
    root, _, first, second = fine_tunes
    merged = _merged(tiny_model_dir, root, [0.75, 0.25], "slerp")
    name = NAMES[1]
    a, b = first[name].double(), second[name].double()
    theta = math.acos((a.flatten() @ b.flatten() / (a.norm() * b.norm())).item())
    t = 0.25
    expected = (math.sin((1 - t) * theta) * a + math.sin(t * theta) * b) / math.sin(theta)
    torch.testing.assert_close(merged[name].detach(), expected.float())


def test_slerp_by_hand_on_vectors():
    x, y = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp(x, y, 0.5), torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]))
    torch.testing.assert_close(slerp(x, y, 0.0), x)
    torch.testing.assert_close(slerp(2 * x, 2 * y, 1 / 3), 2 * torch.tensor([math.cos(math.pi / 6), 0.5]))
    # Parallel (or zero) tensors: no arc to follow, the linear interpolation.
    torch.testing.assert_close(slerp(x, 3 * x, 0.5), 2 * x)
    torch.testing.assert_close(slerp(torch.zeros(2), y, 0.25), 0.25 * y)


def test_a_part_with_tensors_of_another_shape_is_refused(tiny_model_dir, fine_tunes, tmp_path):
    root, _, _, _ = fine_tunes
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.hidden_size = 64
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "first", safe_serialization=True)
    (tmp_path / "second").symlink_to(root / "second")
    with pytest.raises(StepError, match=r"part first: model.embed_tokens.weight is \(\d+, 64\), the base's"):
        _merged(tiny_model_dir, tmp_path, [0.5, 0.5], "linear")
