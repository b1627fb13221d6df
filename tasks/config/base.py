"""What every conf model shares: the strict base (unknown keys are refused), the slug type of names, and
how a validation failure reads."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SerializationInfo, ValidationError, model_serializer

SLUG = r"^[a-z0-9][a-z0-9._-]{0,62}$"
SlugStr = Annotated[str, Field(pattern=SLUG)]


class StrictModel(BaseModel):
    """A conf section: a misspelt key is an error, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid")


class WrittenAsGiven(BaseModel):
    """A model stored as JSON and read back by a later version: only the fields a producer gave are
    written. An optional field left out stays out instead of appearing as null, and a field added by a
    later version (with its default) does not appear in a file written before it, so a loaded file dumps
    back to the same JSON."""

    @model_serializer(mode="wrap")
    def _given_fields_only(self, handler: Any, info: SerializationInfo) -> dict[str, Any]:
        data = handler(self)
        declared = type(self).model_fields
        return {k: v for k, v in data.items() if k not in declared or k in self.model_fields_set}


class AddedLaterAsGiven(BaseModel):
    """A conf section that job specs carry whole (the export settings in an evaluate spec): its fields
    are always written, except those named in `ADDED_LATER` when a producer did not give them. A spec
    stored before such a field existed then loads and dumps back to the same JSON, while every reader of
    `experiment.json` still finds each original field."""

    ADDED_LATER: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _added_fields_when_given(self, handler: Any, info: SerializationInfo) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k not in self.ADDED_LATER or k in self.model_fields_set}


class ConfError(ValueError):
    """A trigger conf that does not validate; the message names every bad field."""


PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def path_part(part: str | int) -> str:
    """A key as written in a field path; a key a conf made up (empty, spaces, newlines, 5,000 characters)
    is quoted and cut, so the path stays one readable line."""
    text = str(part)
    return text if PLAIN_KEY.fullmatch(text) else json.dumps(text[:40] + ("..." if len(text) > 40 else ""))


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the field path, e.g. `datasets.0.split: ...`."""
    lines = []
    for item in error.errors():
        path = ".".join(path_part(p) for p in item["loc"]) or "conf"
        # A message may repeat a given value: its line breaks would start lines naming no field.
        message = " ".join(re.sub(r"^Value error, ", "", item["msg"]).splitlines())
        lines.append(f"{path}: {message}")
    return "\n".join(lines)
