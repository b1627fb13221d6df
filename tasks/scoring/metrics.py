"""The one entry point the steps score with: `score()` for text metrics, `loss_scores()` for loss metrics.

Text metrics are `evaluate` modules (`plugins/scoring/<name>/<name>.py` and the scoring plugins; see
`tasks.scoring.plugins`), loaded by the path of their script, so nothing is fetched from the Hugging Face
Hub, and loaded once per process. evaluate copies a loaded script into a "dynamic modules" directory and
keeps a data directory per metric; both live in one temporary directory per process, removed at exit,
so scoring writes nothing under ~/.cache and two processes never share half-written copies.
"""

from __future__ import annotations

import atexit
import math
import shutil
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.scoring import plugins as scoring_plugins

# exp() overflows a float above ~709.78; a perplexity of e^700 already means "no fit at all", and JSON
# (XCom, the leaderboard) has no infinity.
MAX_LOG_PERPLEXITY = 700.0

_lock = threading.RLock()  # re-entrant: the composite module loads rouge_l and bleu while computing
_loaded: dict[Path, Any] = {}
_workdir: Path | None = None


def workdir() -> Path:
    """This process's directory for evaluate's module copies (`modules/`) and metric data (`data/`)."""
    global _workdir
    with _lock:
        if _workdir is None:
            _workdir = Path(tempfile.mkdtemp(prefix="tunerflow-scoring-"))
            atexit.register(shutil.rmtree, _workdir, ignore_errors=True)
        return _workdir


def _evaluate() -> Any:
    """`evaluate`, set up to work offline and to cache under `workdir()`."""
    import evaluate
    import evaluate.config

    # Read at call time, so setting them here (even after another import of evaluate) takes effect.
    evaluate.config.HF_EVALUATE_OFFLINE = True
    evaluate.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    existing = sys.modules.get("evaluate_modules")
    if existing is not None:
        # Loaded before in this process: Python keeps the first `evaluate_modules` package it imported,
        # so new copies must go where that one lives.
        modules = Path(next(iter(existing.__path__))).parent
    else:
        modules = workdir() / "modules"
        modules.mkdir(exist_ok=True)
        if str(modules) not in sys.path:
            # Ahead of a ~/.cache/huggingface/modules that another library may have put on sys.path
            # (evaluate appends), so that `evaluate_modules` is imported from here.
            sys.path.insert(0, str(modules))
    evaluate.config.HF_MODULES_CACHE = modules
    return evaluate


def load_metric(name: str) -> Any:
    """The loaded evaluate module of text metric `name` (loaded once per process)."""
    spec = scoring_plugins.get(name)
    if spec.script is None:
        raise ValueError(f"'{name}' is a loss metric: it comes from the model's loss, see loss_scores()")
    with _lock:
        module = _loaded.get(spec.script)
        if module is None:
            evaluate = _evaluate()
            from evaluate.utils.file_utils import DownloadConfig

            # The script's path, not its directory: a directory that does not exist would be taken for
            # a Hub name. local_files_only keeps evaluate's downloader off the network.
            module = evaluate.load(
                str(spec.script),
                keep_in_memory=True,
                cache_dir=str(workdir() / "data"),
                download_config=DownloadConfig(local_files_only=True, cache_dir=str(workdir() / "data")),
            )
            _loaded[spec.script] = module
        return module


# Inputs a metric module may declare besides predictions and references, one value per row.
OPTIONAL_INPUTS = ("questions",)


def inputs_of(name: str) -> tuple[str, ...]:
    """The per-row inputs (evaluate features) text metric `name` declares, e.g. predictions, references."""
    features = load_metric(name).features  # one Features, or a list of alternative ones with the same keys
    return tuple(features[0] if isinstance(features, list) else features)


def compute(
    name: str,
    predictions: Sequence[str],
    references: Sequence[str],
    questions: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> float:
    """Text metric `name` over the rows, unrounded. `questions` go only to a metric that declares them
    (evaluate would hand an undeclared input to its `_compute` as an unknown argument); `options` are the
    metric's keyword arguments."""
    return _computed(name, predictions, references, questions, options)[0]


def _computed(
    name: str,
    predictions: Sequence[str],
    references: Sequence[str],
    questions: Sequence[str] | None,
    options: Mapping[str, Any] | None,
) -> tuple[float, dict[str, Any]]:
    """`compute`'s value, and the module's whole result (which may hold more than the value)."""
    inputs: dict[str, list[str]] = {"predictions": list(predictions), "references": list(references)}
    declared = inputs_of(name)
    unsupported = [item for item in declared if item not in (*inputs, *OPTIONAL_INPUTS)]
    if unsupported:
        raise ValueError(
            f"metric '{name}' ({scoring_plugins.get(name).script}) declares inputs {unsupported} that "
            f"tunerflow does not provide; a metric's features are predictions, references and optionally "
            f"{', '.join(OPTIONAL_INPUTS)}"
        )
    if "questions" in declared:
        if questions is None:
            raise ValueError(
                f"metric '{name}' grades answers against their questions, but none were given: pass "
                "questions= (the last user turn of each row) to score()"
            )
        inputs["questions"] = list(questions)
    result = load_metric(name).compute(**inputs, **dict(options or {}))
    if isinstance(result, dict) and name not in result and len(result) == 1:
        result = {name: next(iter(result.values()))}
    value = result.get(name) if isinstance(result, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(
            f"metric '{name}' ({scoring_plugins.get(name).script}) returned {result!r}; its _compute must "
            f"return {{'{name}': <finite number>}}"
        )
    return float(value), result


def row_values(
    name: str,
    predictions: Sequence[str],
    references: Sequence[str],
    questions: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[float]:
    """Each row's own value of text metric `name`, unrounded, in row order (GRPO's rewards).

    A metric that grades against the questions is a judge model's: it is computed once over all the rows,
    so its client grades them `max_concurrency` at a time as in the evaluate step (one call per row would
    grade them one after the other), and its per-row values are the `<name>_rows` list of its result (an
    ungraded row counts 0 there, as in its mean). Every other metric is computed on each row alone."""
    predictions, references = list(predictions), list(references)
    if not predictions:
        return []
    if "questions" not in inputs_of(name):
        return [
            compute(name, [prediction], [reference], None, options)
            for prediction, reference in zip(predictions, references, strict=True)
        ]
    _, result = _computed(name, predictions, references, questions, options)
    rows = result.get(f"{name}_rows") if isinstance(result, dict) else None
    if not isinstance(rows, list) or len(rows) != len(predictions):
        raise ValueError(
            f"metric '{name}' ({scoring_plugins.get(name).script}) grades answers against their questions "
            f"but returned no per-row values; to reward GRPO with it, its _compute must also return "
            f"{{'{name}_rows': [<one number per row>]}}"
        )
    return [float(value) for value in rows]


def score(
    metrics: Sequence[str],
    predictions: Sequence[str],
    references: Sequence[str],
    questions: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, float]:
    """The text metrics among `metrics` (loss metrics are skipped: see loss_scores), rounded to 6 places.

    `questions` (one per row: the last user turn) reach the metrics that declare a `questions` input,
    such as llm_judge; `options[name]` are extra keyword arguments of metric `name`'s compute, e.g.
    `{"llm_judge": ScoringConfig.judge.model_dump()}`. Options of metrics not in `metrics` are ignored."""
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if questions is not None and len(questions) != len(predictions):
        raise ValueError(f"{len(questions)} questions for {len(predictions)} predictions")
    options = options or {}
    return {
        name: round(compute(name, predictions, references, questions, options.get(name)), 6)
        if predictions
        else 0.0
        for name in metrics
        if not scoring_plugins.is_loss_metric(name)
    }


def score_answers(
    scoring: Any,
    predictions: Sequence[str],
    conversations: Sequence[Sequence[Mapping[str, str]]],
    references: Sequence[str],
) -> dict[str, float]:
    """The text metrics of `scoring` (a ScoringConfig) on answers to held-out conversations, each row's
    last user turn as its question and the judge with the conf's settings: how every job is scored."""
    return score(
        scoring.metrics,
        predictions,
        references,
        questions=questions_of(conversations),
        options={"llm_judge": scoring.judge.model_dump()},
    )


def scored_per_row(name: str) -> bool:
    """Whether text metric `name` is worth a score of its own on every row. Loss metrics have no
    per-row value here, and a metric that grades against the questions is a judge model's: one more call
    per row would double what the judge costs, so its per-row grades are left out."""
    return not scoring_plugins.is_loss_metric(name) and "questions" not in inputs_of(name)


def row_scores(
    metrics: Sequence[str], predictions: Sequence[str], references: Sequence[str]
) -> list[dict[str, float]]:
    """Each row's own score on every metric of `metrics` that `scored_per_row`, rounded like `score`:
    the same module computed on that row alone (so a row's rouge_l is its ROUGE-L F-measure)."""
    names = [name for name in metrics if scored_per_row(name)]
    return [
        score(names, [prediction], [reference])
        for prediction, reference in zip(predictions, references, strict=True)
    ]


def questions_of(conversations: Sequence[Sequence[Mapping[str, str]]]) -> list[str]:
    """Each conversation's last user turn: the question an answer is graded against (e.g. by llm_judge)."""
    return [
        next((turn["content"] for turn in reversed(conversation) if turn.get("role") == "user"), "")
        for conversation in conversations
    ]


def perplexity(loss: float) -> float:
    return math.exp(min(loss, MAX_LOG_PERPLEXITY))


def loss_scores(metrics: Sequence[str], answer_loss: float) -> dict[str, float]:
    """The loss metrics among `metrics`, from the mean answer-token loss on the held-out rows."""
    values = {"eval_loss": answer_loss, "perplexity": perplexity(answer_loss)}
    return {name: round(values[name], 6) for name in metrics if scoring_plugins.is_loss_metric(name)}


def needs_loss(metrics: Sequence[str]) -> bool:
    """Whether any of `metrics` comes from the model's loss (so the step must compute it)."""
    return any(scoring_plugins.is_loss_metric(name) for name in metrics)
