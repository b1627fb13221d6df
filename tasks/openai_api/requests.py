"""The body of `POST /fine_tuning/jobs` as OpenAI's reference gives it, plus tunerflow's own `tunerflow`
object (sent with the `openai` client's `extra_body`), and the one reader that turns a refused body into
OpenAI's 400 naming the field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tasks.config.base import format_validation_error, path_part
from tasks.openai_api.objects import ApiError


def _auto_or(kind: type, low: float, high: float):
    """ "auto" or a number of `kind` in [low, high], refused with one message (a plain union would give
    one error per member)."""

    def check(value: Any) -> Any:
        if value == "auto":
            return value
        whole = kind is int
        if isinstance(value, bool) or not isinstance(value, int | float) or (whole and value != int(value)):
            raise ValueError(f"'{value}' is neither \"auto\" nor a {'whole ' if whole else ''}number")
        if not low <= value <= high or (not whole and value <= 0):
            raise ValueError(f"{value} is outside {low:g} to {high:g}")
        return kind(value)

    return Annotated[Any, AfterValidator(check)]


Epochs = _auto_or(int, 1, 100)
BatchSize = _auto_or(int, 1, 4096)
Multiplier = _auto_or(float, 0, 100)
Beta = _auto_or(float, 0, 100)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SupervisedHyperparameters(Strict):
    """OpenAI's supervised hyperparameters; "auto" keeps the preset's value."""

    n_epochs: Epochs = Field("auto", description="Epochs over the training file (sets max_steps to -1).")
    batch_size: BatchSize = Field("auto", description="Rows per optimizer step (the preset's batch_size).")
    learning_rate_multiplier: Multiplier = Field("auto", description="Factor on the preset's learning_rate.")


class DpoHyperparameters(SupervisedHyperparameters):
    """OpenAI's DPO hyperparameters: the supervised ones and beta."""

    beta: Beta = Field("auto", description="DPO's beta (hparams dpo_beta).")


class SupervisedMethod(Strict):
    hyperparameters: SupervisedHyperparameters = Field(
        default_factory=SupervisedHyperparameters, description="The supervised hyperparameters."
    )


class DpoMethod(Strict):
    hyperparameters: DpoHyperparameters = Field(
        default_factory=DpoHyperparameters, description="The DPO hyperparameters."
    )


# Why `method.type: reinforcement` is refused rather than mapped onto GRPO (docs/openai-api.md).
REINFORCEMENT_REFUSED = (
    "'reinforcement' is not supported: OpenAI's RFT rows end with a user turn and keep the "
    "reference in fields its grader reads ({{item.<field>}}), and its graders have no exact counterpart "
    "among tunerflow's rewards (string_check's eq is case-sensitive where exact_match normalises, "
    "like/ilike and most text_similarity metrics have none); use type supervised or dpo here, or train "
    "with GRPO through an experiment conf (training.type grpo, hparams.grpo_reward)"
)


class Method(Strict):
    """`{"type": "supervised" | "dpo", "supervised": {...}, "dpo": {...}}`; reinforcement is refused."""

    type: Literal["supervised", "dpo"] = Field(description="supervised (sft) or dpo.")
    supervised: SupervisedMethod | None = Field(None, description="With type supervised.")
    dpo: DpoMethod | None = Field(None, description="With type dpo.")

    @field_validator("type", mode="before")
    @classmethod
    def _reinforcement_says_why(cls, value: Any) -> Any:
        if value == "reinforcement":
            raise ValueError(REINFORCEMENT_REFUSED)
        return value

    @model_validator(mode="after")
    def _settings_match_type(self) -> Method:
        other = "dpo" if self.type == "supervised" else "supervised"
        if getattr(self, other) is not None:
            raise ValueError(f"method.{other} is given but method.type is '{self.type}'; remove one of them")
        return self


class TunerflowOptions(Strict):
    """tunerflow's own settings beside OpenAI's (send them as `extra_body={"tunerflow": {...}}`)."""

    preset: str | None = Field(
        None, description="The hparams preset; unset: lora-default (dpo-lora for dpo)."
    )
    hparams: dict[str, Any] = Field(
        default_factory=dict, description="More hyperparameters of the one group, e.g. max_steps, lora_r."
    )
    conf: dict[str, Any] = Field(
        default_factory=dict,
        description="More of the experiment conf: scoring, export, promotion, training.method, description.",
    )


class CreateJobRequest(Strict):
    """`POST /fine_tuning/jobs`."""

    model: str = Field(min_length=1, description="A catalog name, `<registry>-v<N>`, or an allowed path.")
    training_file: str = Field(min_length=1, description="The id of an uploaded file.")
    validation_file: str | None = Field(None, description="The id of an uploaded file: the scored rows.")
    hyperparameters: SupervisedHyperparameters | None = Field(
        None, description="OpenAI's older place for the supervised hyperparameters."
    )
    method: Method | None = Field(None, description="supervised (default) or dpo, with hyperparameters.")
    suffix: str | None = Field(None, max_length=64, description="Part of the experiment and registry name.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="The training seed (hparams seed).")
    metadata: dict[str, str] | None = Field(None, description="Kept and returned with the job.")
    integrations: list[Any] | None = Field(None, description="Refused when not empty (no integrations).")
    tunerflow: TunerflowOptions = Field(default_factory=TunerflowOptions, description="tunerflow's options.")

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self) -> CreateJobRequest:
        if self.integrations:
            raise ValueError("integrations: not supported by tunerflow; remove it")
        if self.hyperparameters is not None and self.method is not None:
            raise ValueError(
                "hyperparameters: give them in method.<type>.hyperparameters or here, not in both"
            )
        return self

    @property
    def method_type(self) -> str:
        return self.method.type if self.method else "supervised"

    def chosen_hyperparameters(self) -> SupervisedHyperparameters:
        """The hyperparameters wherever the request put them (all "auto" when nowhere)."""
        if self.method is not None:
            settings = self.method.supervised if self.method.type == "supervised" else self.method.dpo
            if settings is not None:
                return settings.hyperparameters
            return SupervisedHyperparameters() if self.method.type == "supervised" else DpoHyperparameters()
        return self.hyperparameters or SupervisedHyperparameters()


def parse_request(body: Any) -> CreateJobRequest:
    """The request, or ApiError 400 naming the first bad field and listing every problem."""
    if not isinstance(body, dict):
        raise ApiError("the body must be a JSON object")
    try:
        return CreateJobRequest.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        # A rule of the whole request names its field at the start of its message.
        param = ".".join(path_part(p) for p in first["loc"]) or first["msg"].split(":")[0].split()[-1]
        raise ApiError(format_validation_error(error).replace("\n", "; "), param=param) from None
