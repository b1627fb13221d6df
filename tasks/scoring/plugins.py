"""Which metrics exist and which way they point, found without importing them. Stdlib only.

Conf validation runs at DAG parse time, where `evaluate`, `datasets` and torch must not be imported, yet
it has to know every metric name and whether a lower value is better. So a metric is found by looking
at files, and its direction is read from its source with `ast`:

- **Loss metrics** are built in: `eval_loss` (mean cross-entropy of the answer tokens on the held-out
  rows) and `perplexity` (exp of it), both computed by the evaluate step from the model's loss, both
  lower-is-better.
- **Text metrics** are `evaluate` modules: a directory `<name>/` holding `<name>.py` with one
  `evaluate.Metric` subclass. They are looked up in the repository's `plugins/scoring/` (the built-ins
  and the example plugin `keyword_hit`), then in each directory listed in `$TUNERFLOW_SCORING_PLUGINS`
  (os.pathsep-separated). `<name>` is what a conf names in `scoring.metrics` / `scoring.primary`.
- A module-level `GREATER_IS_BETTER = False` (a literal) marks a text metric whose lower values are
  better; without it, higher is better.

Directories whose name starts with `_` or `.`, and directories without `<name>.py`, are skipped. A name
used twice (a plugin named like a built-in, or two plugin directories with the same metric) is an
error: which one would score is otherwise an accident of the search order.
"""

from __future__ import annotations

import ast
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ENV_VAR = "TUNERFLOW_SCORING_PLUGINS"
# Same directory as tasks.config.catalog.REPO_ROOT / "plugins" / "scoring"; not imported from there, because
# tasks.config.catalog pulls in yaml and pydantic and this module is stdlib only.
REPO_PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "scoring"
FLAG = "GREATER_IS_BETTER"
# The name becomes a Python module name when evaluate imports the script, and a key in the conf,
# the leaderboard and the registry: a lowercase identifier.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

LOSS_METRICS: dict[str, str] = {
    "eval_loss": "Mean cross-entropy of the answer tokens on the held-out rows (lower is better).",
    "perplexity": "exp(eval_loss): the answer tokens' perplexity (lower is better).",
}


class ScoringPluginError(ValueError):
    """A metric module that cannot be used. A ValueError, so conf validation reports it."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric as the conf sees it; `script` is the evaluate module (None for loss metrics)."""

    name: str
    kind: Literal["text", "loss"]
    greater_is_better: bool
    script: Path | None
    description: str


def plugin_dirs() -> list[Path]:
    """Where metric modules are looked for: plugins/scoring, then the $TUNERFLOW_SCORING_PLUGINS dirs."""
    listed = os.environ.get(ENV_VAR, "").split(os.pathsep)
    return [REPO_PLUGIN_DIR, *(Path(part).expanduser() for part in listed if part.strip())]


def _scripts() -> list[Path]:
    scripts = []
    for index, directory in enumerate(plugin_dirs()):
        if not directory.is_dir():
            if index > 0:  # a typo in the variable should not silently lose the plugins
                raise ScoringPluginError(f"{ENV_VAR} names {directory}, which is not a directory")
            continue
        for sub in sorted(directory.iterdir()):
            script = sub / f"{sub.name}.py"
            if sub.is_dir() and not sub.name.startswith(("_", ".")) and script.is_file():
                scripts.append(script.resolve())
    return scripts


def _read_script(script: Path) -> tuple[bool, str]:
    """(greater_is_better, first docstring line) from the module's source, without running it."""
    try:
        tree = ast.parse(script.read_bytes(), filename=str(script))
    except (SyntaxError, ValueError) as error:
        raise ScoringPluginError(f"scoring plugin {script} does not parse: {error}") from None
    greater = True
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id == FLAG for t in targets):
            value = node.value
            if not (isinstance(value, ast.Constant) and isinstance(value.value, bool)):
                raise ScoringPluginError(
                    f"scoring plugin {script}: {FLAG} must be the literal True or False, because it is read "
                    "without importing the module"
                )
            greater = value.value
    docstring = (ast.get_docstring(tree) or "").strip()
    return greater, docstring.splitlines()[0] if docstring else ""


def _discover(scripts: list[Path]) -> dict[str, MetricSpec]:
    specs = {
        name: MetricSpec(name, "loss", False, None, description) for name, description in LOSS_METRICS.items()
    }
    for script in scripts:
        name = script.stem
        if not NAME.match(name):
            raise ScoringPluginError(
                f"scoring plugin {script.parent}: the name '{name}' must be a lowercase identifier "
                "(a-z, 0-9, _; starting with a letter), since it is a module name and a conf key"
            )
        if name in specs:
            where = specs[name].script.parent if specs[name].script else "the built-in loss metrics"
            raise ScoringPluginError(
                f"scoring plugin {script.parent} is named '{name}' like the metric in {where}; rename one"
            )
        greater, description = _read_script(script)
        specs[name] = MetricSpec(name, "text", greater, script, description)
    return specs


_lock = threading.Lock()
_cache: dict[tuple, dict[str, MetricSpec]] = {}


def metrics() -> dict[str, MetricSpec]:
    """Every known metric by name: loss metrics, then the modules in search order.

    Cached on the scripts' paths and modification times, so a plugin added, removed or edited is seen
    by the next call; the check costs a directory listing, not a parse."""
    scripts = _scripts()
    key = tuple((str(path), path.stat().st_mtime_ns) for path in scripts)
    with _lock:
        if key not in _cache:
            _cache.clear()
            _cache[key] = _discover(scripts)
        return _cache[key]


def metric_names() -> tuple[str, ...]:
    return tuple(metrics())


def where() -> str:
    return f"{REPO_PLUGIN_DIR.parent.name}/{REPO_PLUGIN_DIR.name} and the directories in ${ENV_VAR}"


def get(name: str) -> MetricSpec:
    """The metric `name`; ScoringPluginError naming the known ones."""
    spec = metrics().get(name)
    if spec is None:
        raise ScoringPluginError(unknown_message(name))
    return spec


def unknown_message(*names: str) -> str:
    """Why `names` are refused, listing the metrics that exist and where plugins are looked for."""
    quoted = ", ".join(f"'{name}'" for name in names)
    return (
        f"unknown metric{'s' if len(names) > 1 else ''} {quoted}; known metrics: {', '.join(metric_names())} "
        f"(scoring plugins are found in {where()})"
    )


def lower_is_better(name: str) -> bool:
    """Whether a lower value of `name` is better (loss metrics and plugins with GREATER_IS_BETTER = False)."""
    return not get(name).greater_is_better


def is_loss_metric(name: str) -> bool:
    """Computed from the model's loss on the held-out rows, not from generated answers."""
    return get(name).kind == "loss"


def text_metric_names() -> tuple[str, ...]:
    return tuple(name for name, spec in metrics().items() if spec.kind == "text")
