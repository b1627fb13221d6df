"""A fine-tuning job request turned into one `finetune_experiment` conf, validated before any run.

One dataset (the training file; with a validation file, the two as pre-split train and test rows, the
validation file's rows being the ones scored), one model, one hyperparameter group on a preset, the
training type from `method.type` (supervised -> sft, dpo -> dpo) with LoRA. "auto" keeps the preset's
value; `n_epochs` sets `epochs` (and `max_steps` -1, so epochs decide), `batch_size` sets `batch_size`
(with `micro_batch_size` lowered to a divisor of it), `learning_rate_multiplier` scales the preset's
`learning_rate`, `beta` sets `dpo_beta`, `seed` the group's `seed`. The experiment (and so the registry
the run registers its winner in) is named `ft-<model>[-<suffix>]`.

Every refusal is an `ApiError` naming the request field: the conf's own field paths are mapped back to
the request's (`hparams.0.epochs` -> `hyperparameters.n_epochs`).
"""

from __future__ import annotations

import re
from typing import Any

from tasks.config import allowed_paths, catalog
from tasks.config.base import ConfError
from tasks.config.experiment import parse_experiment
from tasks.config.hparams import HParams
from tasks.openai_api import files
from tasks.openai_api.objects import ApiError, Hyperparameters
from tasks.openai_api.requests import CreateJobRequest
from tasks.registry import versions as registry
from tasks.storage import layout, store

GROUP = "openai"
DEFAULT_PRESETS = {"supervised": "lora-default", "dpo": "dpo-lora"}
TRAINING_TYPES = {"supervised": "sft", "dpo": "dpo"}
KINDS = {"supervised": "chat", "dpo": "preference"}
# Conf keys the API builds from the request: `tunerflow.conf` may not set them.
BUILT = ("name", "datasets", "models", "hparams")
REGISTRY_VERSION = re.compile(r"^(?P<name>.+)-v(?P<version>\d+)$")
# A conf field path's start -> the request field it came from.
PARAMS = (
    ("hparams.0.epochs", "hyperparameters.n_epochs"),
    ("hparams.0.max_steps", "hyperparameters.n_epochs"),
    ("hparams.0.batch_size", "hyperparameters.batch_size"),
    ("hparams.0.micro_batch_size", "hyperparameters.batch_size"),
    ("hparams.0.learning_rate", "hyperparameters.learning_rate_multiplier"),
    ("hparams.0.dpo_beta", "method.dpo.hyperparameters.beta"),
    ("hparams.0.seed", "seed"),
    ("hparams.0.preset", "tunerflow.preset"),
    ("hparams", "tunerflow.hparams"),
    ("models", "model"),
    ("datasets", "training_file"),
    ("training", "method"),
    ("name", "suffix"),
)


def slug(text: str, limit: int = 63) -> str:
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return cleaned[:limit].rstrip("-._") or "x"


def experiment_name(model: str, suffix: str | None) -> str:
    base = slug(model.rsplit("/", 1)[-1], 40)
    return slug(f"ft-{base}-{suffix}" if suffix else f"ft-{base}")


def _registry_weights(root: str, name: str, version: int) -> str:
    """The full weights of a registry version: its export's merged model, or the merged model its
    training wrote (`merge_adapter`); ApiError when it has neither."""
    entry = registry.get_version(root, name, version) or {}
    uri = entry.get("model_uri")
    if not uri and entry.get("run_uri") and entry.get("job_id"):
        trained = store.committed_result(layout.step(layout.job(entry["run_uri"], entry["job_id"]), "train"))
        uri = (trained or {}).get("merged_uri")
    if not uri:
        raise ApiError(
            f"model: version {version} of registry '{name}' is a LoRA adapter without full weights; "
            "fine-tune a version that was exported, or trained with merge_adapter",
            param="model",
        )
    return uri


def resolve_model(root: str, model: str) -> dict[str, Any]:
    """The conf's model: a catalog entry, a registry version `<registry>-v<N>`, or a directory under the
    deployment's allowed paths."""
    known = catalog.models()
    if model in known:
        return {"name": model}
    found = REGISTRY_VERSION.match(model)
    if found and int(found["version"]) in registry.version_numbers(root, found["name"]):
        uri = _registry_weights(root, found["name"], int(found["version"]))
        return {"name": slug(model), "uri": uri}
    local = store.local_path_or_none(model)
    if local is not None and local.is_absolute():
        problem = allowed_paths.uri_problem("model", model, allowed_paths.server_roots(root))
        if problem:
            raise ApiError(problem, param="model", code="model_not_found")
        if not store.exists(store.join(store.to_uri(local), "config.json")):
            raise ApiError(f"model: no config.json in '{model}'", param="model", code="model_not_found")
        return {"name": slug(model.rstrip("/").rsplit("/", 1)[-1]), "uri": model}
    raise ApiError(
        f"model: '{model}' is not in the catalog ({', '.join(sorted(known))}), not a registry version "
        "(<registry>-v<N>) and not a model directory",
        param="model",
        code="model_not_found",
    )


def _file(root: str, file_id: str, param: str, method: str) -> dict[str, Any]:
    try:
        found = files.record(root, file_id, param)
    except ApiError as error:
        raise ApiError(f"{param}: {error.message}", param=param, code="file_not_found") from None
    if found["purpose"] != files.PURPOSE:
        raise ApiError(f"{param}: file '{file_id}' is not a fine-tune file", param=param)
    if found["kind"] != KINDS[method]:
        raise ApiError(
            f"{param}: file '{file_id}' holds {found['kind']} rows, but method '{method}' trains on "
            f"{KINDS[method]} rows",
            param=param,
            code="invalid_file_format",
        )
    return found


def dataset(root: str, request: CreateJobRequest) -> dict[str, Any]:
    method = request.method_type
    train = _file(root, request.training_file, "training_file", method)
    if request.validation_file is None:
        return {"name": train["id"], "uri": train["uri"], "format": train["format"]}
    validation = _file(root, request.validation_file, "validation_file", method)
    return {
        "name": train["id"],
        "train_uri": train["uri"],
        "validation_uri": validation["uri"],
        "test_uri": validation["uri"],
        "format": train["format"],
    }


def _divisor_at_most(batch: int, micro: int) -> int:
    return max(d for d in range(1, min(batch, micro) + 1) if batch % d == 0)


def hparams_group(request: CreateJobRequest) -> tuple[dict[str, Any], Hyperparameters]:
    """The conf's one hyperparameter group, and the hyperparameters it resolves to."""
    options, method = request.tunerflow, request.method_type
    preset = options.preset or DEFAULT_PRESETS[method]
    presets = catalog.hparam_presets()
    if preset not in presets:
        raise ApiError(
            f"tunerflow.preset: '{preset}' is not a preset; use one of {', '.join(presets)}",
            param="tunerflow.preset",
        )
    group: dict[str, Any] = {"name": GROUP, "preset": preset, **options.hparams}
    try:
        base = catalog.resolve_hparams(HParams.model_validate(group))
    except ValueError as error:
        raise ApiError(f"tunerflow: {error}".replace("\n", "; "), param="tunerflow.hparams") from None
    chosen = request.chosen_hyperparameters()
    if chosen.n_epochs != "auto":
        group.update(epochs=chosen.n_epochs, max_steps=-1)
    if chosen.batch_size != "auto":
        group.update(
            batch_size=chosen.batch_size,
            micro_batch_size=_divisor_at_most(chosen.batch_size, base.micro_batch_size),
        )
    multiplier = chosen.learning_rate_multiplier
    if multiplier != "auto":
        group["learning_rate"] = base.learning_rate * multiplier
    beta = getattr(chosen, "beta", "auto")
    if beta != "auto":
        group["dpo_beta"] = beta
    if request.seed is not None:
        group["seed"] = request.seed
    resolved = Hyperparameters(
        n_epochs=group.get("epochs", base.epochs),
        batch_size=group.get("batch_size", base.batch_size),
        learning_rate_multiplier=1.0
        if chosen.learning_rate_multiplier == "auto"
        else chosen.learning_rate_multiplier,
        beta=group.get("dpo_beta", base.dpo_beta) if method == "dpo" else None,
    )
    return group, resolved


def request_param(path: str) -> str:
    """The request field a conf field path comes from."""
    for start, param in PARAMS:
        if path == start or path.startswith(start + "."):
            return param
    return f"tunerflow.conf.{path}"


def _problems(error: ConfError) -> list[tuple[str, str]]:
    """(conf field path, problem) of each line of a ConfError; a rule of the whole conf names its field
    at the start of its message (`scoring.primary 'x' must be ...`)."""
    found = []
    for line in [line for line in str(error).splitlines()[1:] if line.strip()] or [str(error)]:
        path, _, problem = line.partition(": ")
        if path != "conf":
            found.append((path, problem or path))
            continue
        for part in problem.split("; "):
            named = re.match(r"^([a-z_][a-z0-9_.]*)[ :]", part)
            found.append((named.group(1) if named else "conf", part))
    return found


def _conf_error(error: ConfError) -> ApiError:
    problems = _problems(error)
    named = [f"{request_param(path)}: {problem} (conf field {path})" for path, problem in problems]
    return ApiError("; ".join(named), param=request_param(problems[0][0]))


def build_conf(root: str, request: CreateJobRequest, job_id: str) -> tuple[dict[str, Any], Hyperparameters]:
    """The validated experiment conf of a job, and its resolved hyperparameters; ApiError naming the
    request field when the request cannot become a valid conf."""
    extra = request.tunerflow.conf
    clashing = [key for key in BUILT if key in extra]
    if clashing:
        raise ApiError(
            f"tunerflow.conf.{clashing[0]}: set by the request itself (model, training_file, "
            "hyperparameters, suffix); remove it",
            param=f"tunerflow.conf.{clashing[0]}",
        )
    model = resolve_model(root, request.model)
    data = dataset(root, request)
    group, resolved = hparams_group(request)
    training = {**(extra.get("training") or {}), "type": TRAINING_TYPES[request.method_type]}
    training.setdefault("method", "lora")
    conf = {
        "description": f"OpenAI fine-tuning job {job_id}",
        **extra,
        "name": experiment_name(request.model, request.suffix),
        "datasets": [data],
        "models": [model],
        "hparams": [group],
        "training": training,
    }
    try:
        experiment = parse_experiment(conf)
    except ConfError as error:
        raise _conf_error(error) from None
    try:
        catalog.resolve_experiment(experiment)
    except ValueError as error:
        raise _conf_error(ConfError(f"invalid experiment conf:\n{error}")) from None
    return conf, resolved


def resolved_seed(conf: dict[str, Any]) -> int:
    """The seed the job trains with (the group's, else its preset's)."""
    group = conf["hparams"][0]
    return int(catalog.resolve_hparams(HParams.model_validate(group)).seed)
