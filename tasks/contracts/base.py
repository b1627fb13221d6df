"""What every contract shares: given-fields-only serialization and loading with a readable refusal."""

from __future__ import annotations

from typing import Any, Self

from pydantic import ConfigDict, ValidationError

from tasks.config.base import WrittenAsGiven, format_validation_error


class ContractError(ValueError):
    """A spec or result that does not validate; the message names every bad field and what to do."""


class Contract(WrittenAsGiven):
    """A spec or result passed between steps. Only the fields a producer gave are written
    (`WrittenAsGiven`), so the stored specs and XCom payloads keep the keys they always had and a loaded
    spec dumps back to the same JSON."""

    model_config = ConfigDict(extra="forbid")

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
