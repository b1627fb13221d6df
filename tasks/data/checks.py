"""Which data checks a dataset definition turned on, whether each ran and what it dropped: the `checks`
list of `validation_report.json` and of the dataset card, so a check that did not run is visible
instead of silently missing. Counts only, never row text.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, Field


class CheckRun(BaseModel):
    """One check a definition turned on, as the preparation carried it out."""

    name: str = Field(
        description="The check: `dedup`, `min_tokens`, `max_tokens`, `decontamination`, `pii` or `filters`."
    )
    ran: bool = Field(description="Whether the check ran over every row it applies to.")
    dropped: int | None = Field(
        description="Rows the check dropped (absent for `filters`, whose reason codes are the plugins' own: "
        "see drop_reasons)."
    )
    drop_reasons: dict[str, int] = Field(
        default_factory=dict, description="The reason codes the check drops rows with, and their counts."
    )
    mode: str | None = Field(None, description="dedup: exact or near; pii: redact or drop.")
    setting: int | float | list[str] | None = Field(
        None,
        description="The limit the check applied: the token count, the n-gram size, the near-dedup "
        "threshold, the filter names.",
    )
    tokenizers: list[str] | None = Field(
        None, description="min_tokens/max_tokens: the models whose tokenizers counted."
    )
    not_run_because: str | None = Field(None, description="When `ran` is false: why, and what to do.")


def _counted(name: str, reasons: Counter, codes: tuple[str, ...], **extra: Any) -> CheckRun:
    found = {code: reasons[code] for code in codes if reasons[code]}
    return CheckRun(name=name, ran=True, dropped=sum(found.values()), drop_reasons=found, **extra)


def checks_run(
    dataset: Any, tokenizers: list[str], reasons: Counter, decontaminated: str | None
) -> list[CheckRun]:
    """The checks `dataset` (a DatasetConfig) turned on. `tokenizers`: the models that counted tokens;
    `decontaminated`: None when decontamination ran, else why it did not."""
    checks = []
    if dataset.dedup != "none":
        codes = ("duplicate", "near_duplicate") if dataset.dedup == "near" else ("duplicate",)
        threshold = dataset.near_dedup_threshold if dataset.dedup == "near" else None
        checks.append(_counted("dedup", reasons, codes, mode=dataset.dedup, setting=threshold))
    for name, value, code in (
        ("min_tokens", dataset.min_tokens if dataset.min_tokens > 1 or tokenizers else None, "too_short"),
        ("max_tokens", dataset.max_tokens, "too_long"),
    ):
        if value is None:
            continue
        if tokenizers:
            checks.append(_counted(name, reasons, (code,), setting=value, tokenizers=tokenizers))
        else:
            because = "no tokenizer was given to count tokens: pass --model CATALOG_NAME"
            checks.append(CheckRun(name=name, ran=False, dropped=0, setting=value, not_run_because=because))
    if dataset.decontaminate_ngram:
        if decontaminated is None:
            checks.append(
                _counted("decontamination", reasons, ("overlaps_eval",), setting=dataset.decontaminate_ngram)
            )
        else:
            checks.append(
                CheckRun(
                    name="decontamination",
                    ran=False,
                    dropped=0,
                    setting=dataset.decontaminate_ngram,
                    not_run_because=decontaminated,
                )
            )
    if dataset.pii != "off":
        checks.append(_counted("pii", reasons, ("pii",), mode=dataset.pii))
    if dataset.filters:
        checks.append(CheckRun(name="filters", ran=True, dropped=None, setting=list(dataset.filters)))
    return checks
