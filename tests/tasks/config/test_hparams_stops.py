"""The hyperparameters that end training early: early stopping, eval_steps and the time limit, refused
when the conf is validated with the group and the field named."""

from __future__ import annotations

import pytest

from tasks.config.hparams import HPARAM_DEFAULTS, HParams, ResolvedHParams

FILLED = {**HPARAM_DEFAULTS, "name": "g", "save_steps": 20}


def resolved(**values) -> ResolvedHParams:
    return ResolvedHParams.model_validate({**FILLED, **values})


def test_stops_are_off_by_default_and_eval_steps_follows_save_steps():
    hp = resolved()
    assert (hp.early_stopping_patience, hp.early_stopping_threshold, hp.eval_steps) == (None, 0.0, None)
    assert hp.max_train_minutes is None


def test_early_stopping_needs_saves_on_evaluation_steps():
    assert resolved(early_stopping_patience=3, eval_steps=5).eval_steps == 5
    assert resolved(early_stopping_patience=3).early_stopping_patience == 3  # evaluates every save_steps
    with pytest.raises(
        ValueError,
        match=r"hparams 'g': early_stopping_patience needs save_steps \(20\) to be a multiple of "
        r"eval_steps \(15\)",
    ):
        resolved(early_stopping_patience=3, eval_steps=15)
    # Without early stopping the evaluations are only a curve: any interval goes.
    assert resolved(eval_steps=15).eval_steps == 15


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("early_stopping_patience", 0, "early_stopping_patience must be 1 or more"),
        ("early_stopping_threshold", -0.1, "early_stopping_threshold must be 0 or more"),
        ("eval_steps", 0, "eval_steps must be 1 or more"),
        ("max_train_minutes", 0, "max_train_minutes must be above 0"),
    ],
)
def test_out_of_range_values_are_refused_in_a_spec_and_inline(field, value, message):
    with pytest.raises(ValueError, match=f"hparams 'g': {message}"):
        resolved(**{field: value})
    with pytest.raises(ValueError, match=field):
        HParams(**{field: value})
