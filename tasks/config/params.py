"""The trigger form: one Airflow Param per top-level experiment field, its JSON Schema generated from
the pydantic models, so the form, REST validation and the first task all enforce the same rules.

JSON Schema cannot say everything pydantic says (split ratios summing to 100, unique names); those
rules are re-checked by `validate_conf`, the first task, which fails before any other task runs.

The form is laid out for a person: sections with human titles, datasets, models and presets as choices
(`tasks.config.form` writes each choice out as the conf it stands for), a "Start from" choice that fills
the empty fields from an example conf (the demo), and only the fields a run cannot do without required.
Airflow's form marks a field required when its type does not allow null, and refuses a REST conf that
omits a Param without a default (HTTP 400, no run): so `datasets`, `models` and `hparams` have no default
but allow null (the form sends an empty field as null, which "Start from" fills), and every other field
defaults to null, "left empty", or to a value.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.config.base import SLUG
from tasks.config.catalog import CatalogEntry, config_dir, models, remote_code_problem
from tasks.config.experiment import ExperimentConfig
from tasks.config.form import (
    BUILTIN,
    REGISTERED,
    TEMPLATE,
    builtin_datasets,
    leading_comment,
    load_conf,
    templates,
)
from tasks.config.scoring import ScoringConfig
from tasks.config.training import ALLOWED_METHODS, TrainingConfig
from tasks.data import dataset_registry
from tasks.scoring.plugins import metric_names
from tasks.storage import store


def inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].split("/")[-1]]
            merged = {
                **inline_refs(copy.deepcopy(target), defs),
                **{k: v for k, v in node.items() if k != "$ref"},
            }
            return merged
        return {key: inline_refs(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [inline_refs(item, defs) for item in node]
    return node


def _when(field: str, value: str, default: str) -> dict[str, Any]:
    """JSON Schema condition "field equals value", also true when the field is omitted and value is
    the pydantic default (an omitted field takes its default)."""
    equals = {"properties": {field: {"const": value}}, "required": [field]}
    return {"anyOf": [equals, {"not": {"required": [field]}}]} if value == default else equals


def _cross_field_schema(field: str, metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """The cross-field rules that JSON Schema can express, so that REST and the form refuse them too."""
    if field == "training":
        default = TrainingConfig.model_fields["type"].default
        return [
            {"if": _when("type", kind, default), "then": {"properties": {"method": {"enum": list(methods)}}}}
            for kind, methods in ALLOWED_METHODS.items()
        ]
    if field == "scoring":
        default = ScoringConfig.model_fields["primary"].default
        return [
            {
                "if": _when("primary", metric, default),
                "then": {"properties": {"metrics": {"contains": {"const": metric}}}},
            }
            for metric in metrics
        ]
    return []


def _metric_examples(prop: dict[str, Any], metrics: tuple[str, ...]) -> None:
    """List the metric names as examples, not as an enum: a name the schema does not know (a plugin
    added after the DAG was parsed) is left to validate_conf, which names the metrics it knows."""
    props = prop["properties"]
    props["metrics"]["items"]["examples"] = list(metrics)
    props["primary"]["examples"] = list(metrics)


def field_schemas() -> dict[str, dict[str, Any]]:
    """{field: JSON Schema} of every top-level experiment field, with the metrics known now."""
    return _field_schemas(metric_names())


@lru_cache(maxsize=4)
def _field_schemas(metrics: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    schema = ExperimentConfig.model_json_schema()
    defs = schema.get("$defs", {})
    out = {}
    for name, prop in schema["properties"].items():
        prop = inline_refs(prop, defs)
        prop.pop("default", None)
        if name == "scoring":
            _metric_examples(prop, metrics)
        rules = _cross_field_schema(name, metrics)
        if rules:
            prop["allOf"] = rules
        out[name] = prop
    return out


NO_DEFAULT = object()


class SharedSchema(dict):
    """A Param's JSON Schema that the copies of the Param share.

    Airflow deep-copies a DAG's Params into every task it creates (`finetune_experiment`: 48 copies of
    schemas that hold the definitions of every conf model), which took most of a parse. A schema is not
    changed once the DAG is built, so a deep copy may be the schema itself; the value a Param holds is
    still copied."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedSchema:
        return self


def airflow_params(specs: dict[str, tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    """A DAG's Params from its `param_specs` ({name: (default or NO_DEFAULT, JSON Schema)}), each schema a
    `SharedSchema`: what both DAG files declare."""
    from airflow.sdk import Param  # only the DAG files need Airflow here; the specs are tested without it

    params = {}
    for name, (default, schema) in specs.items():
        param = Param(**schema) if default is NO_DEFAULT else Param(default, **schema)
        param.schema = SharedSchema(param.schema)
        params[name] = param
    return params


DEMO = "demo"
# (title, section) of every Param, in the order the form shows them; a section is an accordion.
LAYOUT: dict[str, tuple[str, str]] = {
    TEMPLATE: ("Start from", "Experiment"),
    "name": ("Name", "Experiment"),
    "description": ("Description", "Experiment"),
    "datasets": ("Datasets", "Data, models and hyperparameters"),
    "models": ("Base models", "Data, models and hyperparameters"),
    "hparams": ("Hyperparameter groups", "Data, models and hyperparameters"),
    "search": ("Search", "Search and budget"),
    "budget": ("Budget", "Search and budget"),
    "training": ("Training type and method", "Training"),
    "scoring": ("Scoring", "Scoring"),
    "merge": ("Merged candidates", "Merge"),
    "export": ("Export", "Export"),
    "promotion": ("Promotion", "Promotion"),
}
# What a string stands for in each list field (tasks.config.form writes it out); the rest of the items
# schema still describes the objects the conf JSON may give instead.
CHOICE_PATTERNS = {
    "datasets": f"^({BUILTIN}|{REGISTERED}){SLUG.removeprefix('^')}",
    "models": SLUG,
    "hparams": SLUG,
}
# The most registered datasets the form lists. Each name is part of the serialized DAG, so every new
# registration makes a new DAG version; a bounded list keeps that (and the form) small. Past it, datasets
# are written in the conf JSON as `registered:<name>`.
FORM_DATASETS_MAX = 100


CHOICE_HELP = {
    "datasets": "Pick built-in datasets (include/data/) and datasets registered with `tunerflow dataset "
    "create`, each named after itself and split 90,5,5. Registered datasets are listed when the store is a "
    "local directory, from the next parse of the DAG after they are registered (the first "
    f"{FORM_DATASETS_MAX} by name; files uploaded through the OpenAI-compatible API are used by their "
    "file id); otherwise, and for any other setting, write them in the conf JSON: `registered:<name>`, "
    "`builtin:<name>` or an object.",
    "models": "Pick models from the catalog (include/configs/models.yaml), or write them in the conf JSON: "
    "a catalog name, or an object with `name` and `uri` for your own weights.",
    "hparams": "Pick presets (include/configs/hparams/): every preset is one training job per dataset and "
    "model. To change a preset's values, write the group in the conf JSON as an object.",
}
OPTIONAL_HELP = "Optional: leave it empty for the default, or the value of the conf chosen in Start from."


def training_help() -> str:
    """The training field is a JSON object in the form: what it may hold, so nobody has to look it up."""
    pairs = "; ".join(f"{kind}: {', '.join(methods)}" for kind, methods in ALLOWED_METHODS.items())
    return f'Write {{"type": ..., "method": ...}}. Each type with the methods it takes: {pairs}.'


NAME_HELP = "Prefilled with the demo's name; give an experiment of your own its own name."


def demo_conf_path() -> Path:
    return templates()[DEMO]


def registered_datasets(store_root: str) -> list[str]:
    """Registered dataset names for the form, where listing them costs the DAG processor nothing: a local
    store only (listing S3 would load boto3 on every parse); none when it cannot be read. Files uploaded
    through the OpenAI-compatible API are left out (jobs use them by file id), and at most
    FORM_DATASETS_MAX names are listed."""
    if not store.is_local(store_root):
        return []
    try:
        names = dataset_registry.registered_names(store_root)
    except OSError:
        return []
    return [name for name in names if not name.startswith(dataset_registry.UPLOAD_PREFIX)][:FORM_DATASETS_MAX]


def _model_label(entry: CatalogEntry) -> str:
    facts = [" ".join(filter(None, [entry.params, entry.family]))]
    if entry.source.gguf:
        facts.append("bundled, works offline")
    if entry.gated:
        facts.append("gated: needs a Hugging Face token")
    return f"{entry.name} ({', '.join(facts)})"


def choices(store_root: str) -> dict[str, dict[str, str]]:
    """{field: {choice: label}} of the form's pick lists: built-in and registered datasets, the catalog's
    usable models and the presets."""
    datasets = {f"{BUILTIN}{name}": f"{name} (built-in)" for name in builtin_datasets()}
    datasets |= {f"{REGISTERED}{name}": f"{name} (registered)" for name in registered_datasets(store_root)}
    usable = [entry for entry in models().values() if remote_code_problem(entry) is None]
    # The presets' leading comments say what each is for; their values are not needed to list them.
    presets = {path.stem: leading_comment(path) for path in sorted((config_dir() / "hparams").glob("*.yaml"))}
    return {
        "datasets": datasets,
        "models": {entry.name: _model_label(entry) for entry in usable},
        "hparams": {name: f"{name}: {summary}" for name, summary in presets.items()},
    }


def _template_schema() -> dict[str, Any]:
    known = templates()
    return {
        "type": ["null", "string"],
        "enum": [None, *known],
        "values_display": {"null": "Nothing: fill in the fields below"}
        | {name: f"{name}: {leading_comment(path)}" for name, path in known.items()},
        "description": "An example experiment (include/configs/experiments/) to start from: every field left "
        "empty takes its value, a field you fill replaces it. The name is always the Name field's: keep "
        "tuna-identity-demo to run the demo as `bash scripts/demo.sh` does.",
    }


def _choice_schema(schema: dict[str, Any], field: str, options: dict[str, str], example: Any) -> dict:
    items = {**schema["items"], "type": ["string", "object"], "pattern": CHOICE_PATTERNS[field]}
    items.pop("title", None)
    example_json = json.dumps(example, separators=(", ", ": "))
    return {
        **schema,
        "type": ["null", "array"],
        "items": items,
        "examples": list(options),
        "values_display": options,
        "description": f"{schema['description']} {CHOICE_HELP[field]} Required unless Start from is set. "
        f"Example: {example_json}",
    }


def _optional_schema(schema: dict[str, Any], default: Any) -> dict[str, Any]:
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    defaults = f" The defaults: {json.dumps(default, separators=(', ', ': '))}." if default else ""
    description = f"{schema['description']} {OPTIONAL_HELP}{defaults}"
    return {**schema, "type": ["null", *types], "description": description}


def param_specs(store_root: str | None = None) -> dict[str, tuple[Any, dict[str, Any]]]:
    """{field: (default, JSON Schema keywords)} for `airflow.sdk.Param(default, **schema)`, in form order.

    `datasets`, `models` and `hparams` have no default, so a REST conf that omits one is refused instead
    of silently running something; `name` is prefilled with the demo's, every other field is empty (null)
    and takes its pydantic default, or the value of the conf chosen in Start from.
    """
    demo = load_conf(demo_conf_path())
    options = choices(store_root or store.default_root())
    schemas = {TEMPLATE: _template_schema(), **field_schemas()}
    specs: dict[str, tuple[Any, dict[str, Any]]] = {}
    for name, (title, section) in LAYOUT.items():
        schema = {**schemas[name], "title": title, "section": section}
        if name in options:
            specs[name] = (NO_DEFAULT, _choice_schema(schema, name, options[name], demo[name]))
        elif name == "name":
            specs[name] = (demo["name"], {**schema, "description": f"{schema['description']} {NAME_HELP}"})
        elif name == TEMPLATE:
            specs[name] = (None, schema)
        else:
            default = ExperimentConfig.model_fields[name].get_default(call_default_factory=True)
            default = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
            if name == "training":
                schema = {**schema, "description": f"{schema['description']} {training_help()}"}
            specs[name] = (None, _optional_schema(schema, default))
    return specs
