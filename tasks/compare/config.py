"""The compare_models trigger conf: two to four models (each one kind of choice), the prompts or an eval
set, and the generation settings, as pydantic models whose JSON Schema becomes the DAG's Params, so the
form, the REST API (HTTP 400, no run) and `plan_compare` enforce the same rules.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from tasks.config.base import StrictModel
from tasks.config.params import NO_DEFAULT, inline_refs
from tasks.contracts.compare import GenerationSettings

LabelStr = Annotated[str, Field(min_length=1, max_length=80)]


class Choice(StrictModel):
    """What every kind of model choice may add."""

    label: LabelStr | None = Field(None, description="Column header; derived from the choice when unset.")
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="This model's own temperature (over the shared `temperature`)."
    )


class RegistryChoice(Choice):
    registry: str = Field(min_length=1, description="A model registry's name (the Models page lists them).")
    version: int | Literal["production"] = Field(
        "production", description="A version number, or `production` for the version in production."
    )
    format: Literal["pytorch", "onnx-int8"] = Field(
        "pytorch", description="`onnx-int8` runs the version's exported INT8 model with ONNX Runtime."
    )


class JobChoice(Choice):
    experiment: str = Field(min_length=1, description="The experiment's name.")
    run: str = Field(min_length=1, description="The finetune_experiment run id.")
    job: str = Field(min_length=1, description="The job id (`<dataset>--<model>--<hparams>`).")


class CatalogChoice(Choice):
    catalog: str = Field(min_length=1, description="A catalog base model (include/configs/models.yaml).")


class PathChoice(Choice):
    path: str = Field(
        min_length=1,
        description="A Hugging Face model directory (safetensors): a local path, file:// or s3:// URI, "
        "or `hf:<hub id>`.",
    )


class OnnxChoice(Choice):
    onnx: str = Field(
        min_length=1, description="An exported ONNX directory, e.g. a run's `export/onnx-int8`."
    )


class EndpointChoice(Choice):
    connection: str = Field(
        min_length=1,
        description="An Airflow connection to an OpenAI-compatible API (host = base URL, password = key, "
        "extra.model = model).",
    )
    model: str | None = Field(None, description="The model name to ask for; the connection's extra.model.")


# Each kind is told apart by the key only it has, so an error names the field of the kind meant.
KINDS = {
    "registry": RegistryChoice,
    "experiment": JobChoice,
    "catalog": CatalogChoice,
    "path": PathChoice,
    "onnx": OnnxChoice,
    "connection": EndpointChoice,
}


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((key for key in KINDS if key in value), None)
    return next((key for key, model in KINDS.items() if isinstance(value, model)), None)


ModelChoice = Annotated[
    Annotated[RegistryChoice, Tag("registry")]
    | Annotated[JobChoice, Tag("experiment")]
    | Annotated[CatalogChoice, Tag("catalog")]
    | Annotated[PathChoice, Tag("path")]
    | Annotated[OnnxChoice, Tag("onnx")]
    | Annotated[EndpointChoice, Tag("connection")],
    Discriminator(
        _kind,
        custom_error_type="model_choice",
        custom_error_message=f"a model is one of: {', '.join(KINDS)} (with its other keys)",
    ),
]


class DatasetEvalSet(StrictModel):
    dataset: str = Field(min_length=1, description="A prepared dataset's name (datasets/<name>/).")
    version: str = Field(min_length=1, description="The prepared version (its content hash).")
    limit: int = Field(5, ge=1, le=200, description="Rows taken from its test split (else validation).")


class RunEvalSet(StrictModel):
    experiment: str = Field(min_length=1, description="The experiment's name.")
    run: str = Field(min_length=1, description="The finetune_experiment run id whose eval rows are used.")
    limit: int = Field(5, ge=1, le=200, description="Rows taken.")


def _eval_set_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "dataset" if "dataset" in value else "run" if "experiment" in value else None
    return "dataset" if isinstance(value, DatasetEvalSet) else "run"


EvalSet = Annotated[
    Annotated[DatasetEvalSet, Tag("dataset")] | Annotated[RunEvalSet, Tag("run")],
    Discriminator(
        _eval_set_kind,
        custom_error_type="eval_set",
        custom_error_message="an eval set is {dataset, version, limit} or {experiment, run, limit}",
    ),
]


class CompareConfig(StrictModel):
    """The compare_models conf. Each top-level field is one Param of the trigger form."""

    models: list[ModelChoice] = Field(
        min_length=2,
        max_length=4,
        description="Two to four models, each one of: {registry, version, format}, {experiment, run, job}, "
        "{catalog}, {path}, {onnx}, {connection, model}; each may add a label and its own temperature.",
    )
    prompts: list[Annotated[str, Field(min_length=1, max_length=8000)]] = Field(
        default_factory=lambda: ["Who are you?"],
        max_length=50,
        description="Questions every model answers (typed in). Empty when an eval set gives them.",
    )
    eval_set: EvalSet | None = Field(
        None,
        description="Questions from held-out rows instead of (or after) the typed ones: "
        "{dataset, version, limit} or {experiment, run, limit}.",
    )
    max_new_tokens: int = GenerationSettings.model_fields["max_new_tokens"]
    temperature: float = GenerationSettings.model_fields["temperature"]
    top_p: float = GenerationSettings.model_fields["top_p"]
    seed: int = GenerationSettings.model_fields["seed"]

    @model_validator(mode="after")
    def _something_to_ask(self) -> CompareConfig:
        if not self.prompts and self.eval_set is None:
            raise ValueError("prompts: type at least one prompt, or choose an eval_set")
        return self

    @property
    def generation(self) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p, seed=self.seed
        )


def param_specs() -> dict[str, tuple[Any, dict[str, Any]]]:
    """{field: (default, JSON Schema keywords)} for `airflow.sdk.Param(default, **schema)`, as
    `tasks.config.params.param_specs` gives the experiment's: `models` has no default, so a REST conf
    that omits it is refused (400) instead of running something nobody chose."""
    schema = CompareConfig.model_json_schema()
    defs = schema.get("$defs", {})
    specs: dict[str, tuple[Any, dict[str, Any]]] = {}
    for name, prop in schema["properties"].items():
        prop = inline_refs(prop, defs)
        prop.pop("default", None)
        field = CompareConfig.model_fields[name]
        default = NO_DEFAULT if field.is_required() else field.get_default(call_default_factory=True)
        specs[name] = (default, prop)
    return specs
