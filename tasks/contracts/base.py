"""What every contract shares: given-fields-only serialization and loading with a readable refusal."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    WrapSerializer,
    model_serializer,
)

from tasks.config.base import format_validation_error
from tasks.config.hparams import ResolvedHParams


class ContractError(ValueError):
    """A spec or result that does not validate; the message names every bad field and what to do."""


class Contract(BaseModel):
    """A spec or result passed between steps.

    Only the fields a producer gave are written: an optional field left out stays out of the JSON
    instead of appearing as null, so the stored specs and XCom payloads keep the keys they always had
    and a loaded spec dumps back to the same JSON.
    """

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _given_fields_only(self, handler: Any, info: SerializationInfo) -> dict[str, Any]:
        data = handler(self)
        declared = type(self).model_fields
        return {k: v for k, v in data.items() if k not in declared or k in self.model_fields_set}

    @classmethod
    def load(cls, data: Any, source: str, remedy: str = "") -> Self:
        """Validate `data` (read from `source`), or raise ContractError naming each bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = format_validation_error(error)
            hint = f"\n{remedy}" if remedy else ""
            raise ContractError(f"{source} is not a valid {cls.__name__}:\n{problems}{hint}") from None


class OpenContract(Contract):
    """A result whose consumers may find more fields than are declared here (written by a step this
    version does not model in full, or by a later version): they are kept and written back unchanged."""

    model_config = ConfigDict(extra="allow")


def _given_hparams(value: ResolvedHParams, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
    data = handler(value)
    return {name: item for name, item in data.items() if name in value.model_fields_set}


# Hyperparameters grow by one declaration each (tasks.config.hparam_fields), and a spec's hparams key a
# job's checkpoints (tasks.training.checkpoints). So a group writes the hyperparameters it was given:
# the planner resolves every one, and a spec stored before a hyperparameter existed dumps back unchanged
# (a retry after an upgrade still resumes its checkpoints).
GivenHParams = Annotated[ResolvedHParams, WrapSerializer(_given_hparams)]
