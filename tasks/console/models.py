"""The Models pages' data: every model registry with its versions and production pointer, and one
registry in full (each version's lineage, export checks and promotion decision, the pointer's history).

Read from the registry's own records (`tasks.registry.versions`) and, for the export checks, the
check_export result the version's run committed. Entries written by older versions lack keys; every
field here is optional where a registry entry may not hold it.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from tasks.registry import versions as registry
from tasks.storage import store

# A run URI is `<root>/experiments/<experiment>/runs/<run slug>` (tasks.storage.layout.run).
RUN_URI = re.compile(r"/experiments/(?P<experiment>[^/]+)/runs/(?P<run>[^/]+)/?$")


class VersionSummary(BaseModel):
    """One registered version as the registries' list shows it."""

    version: int = Field(description="The version number.")
    label: str | None = Field(None, description="The job's label (dataset|model|hparams).")
    created_at: str | None = Field(None, description="When it was registered.")
    primary: str | None = Field(None, description="The metric promotion compares.")
    primary_value: float | None = Field(None, description="The version's value of that metric.")
    in_production: bool = Field(False, description="Production points at this version.")


class RegistrySummary(BaseModel):
    """A model registry on the Models list."""

    name: str = Field(description="The registry's name.")
    production: int | None = Field(None, description="The version in production, if any.")
    production_since: str | None = Field(None, description="When production last moved.")
    versions: list[VersionSummary] = Field(description="Its versions, newest first.")


class ModelsIndex(BaseModel):
    """The Models page: every registry in the store."""

    registries: list[RegistrySummary] = Field(description="Every registry holding a version, by name.")


class ExportCheck(BaseModel):
    """One exported format of a version and what its run's check_export found."""

    format: str = Field(description="The export format (onnx, onnx-int8, ...).")
    uri: str | None = Field(None, description="Where the exported files are.")
    passed: bool | None = Field(None, description="Whether it passed its gates; None when not checked.")
    problems: list[str] = Field(default_factory=list, description="Why a gate failed, in words.")
    metric_drop: float | None = Field(None, description="How much the gated metric dropped.")
    next_token_agreement: float | None = Field(None, description="Agreement with PyTorch's next token.")
    max_logit_diff: float | None = Field(None, description="Largest logit difference from PyTorch.")
    size_bytes: int | None = Field(None, description="Size on disk.")


class RunLink(BaseModel):
    """The experiment run (and job) a version came from."""

    uri: str = Field(description="The run's URI in the store.")
    experiment: str | None = Field(None, description="The experiment, when the URI follows the layout.")
    run: str | None = Field(None, description="The run's key (the slug of its run_id).")
    job_id: str | None = Field(None, description="The job that trained the version.")


class Decision(BaseModel):
    """The promotion decision taken for a version."""

    promoted: bool | None = Field(None, description="Production was pointed at the candidate.")
    reason: str | None = Field(None, description="Why, in words.")
    primary: str | None = Field(None, description="The metric compared.")
    candidate_metric: float | None = Field(None, description="The candidate's primary metric.")
    champion_version: int | None = Field(None, description="The production version compared with.")
    champion_metric: float | None = Field(None, description="The champion's primary metric.")
    decided_at: str | None = Field(None, description="When.")


class ModelVersion(BaseModel):
    """One registered version with its lineage."""

    version: int = Field(description="The version number.")
    label: str | None = Field(None, description="The job's label.")
    created_at: str | None = Field(None, description="When it was registered.")
    base_model: str | None = Field(None, description="The base model's name.")
    base_hub_id: str | None = Field(None, description="The base model's Hugging Face id.")
    dataset: str | None = Field(None, description="The dataset it was trained on.")
    dataset_version: str | None = Field(None, description="That dataset's prepared version.")
    hparams: dict[str, Any] = Field(default_factory=dict, description="The resolved hyperparameters.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Its scores on the eval rows.")
    primary: str | None = Field(None, description="The metric promotion compares.")
    model_uri: str | None = Field(None, description="The merged or fully fine-tuned weights.")
    adapter_uri: str | None = Field(None, description="The LoRA adapter, when nothing was merged.")
    checks_passed: bool | None = Field(None, description="The export checks passed (None: unknown).")
    exports: list[ExportCheck] = Field(default_factory=list, description="Exported formats with checks.")
    run: RunLink | None = Field(None, description="The run it came from, when recorded.")
    decision: Decision | None = Field(None, description="The promotion decision, when one was taken.")
    in_production: bool = Field(False, description="Production points at this version.")


class PointerMove(BaseModel):
    """One move of the production pointer."""

    sequence: int = Field(description="The pointer's sequence after the move (1 = first).")
    version: int = Field(description="The version production pointed at after the move.")
    replaced: int | None = Field(None, description="The version it pointed at before (None: nothing).")
    action: str | None = Field(None, description="promote or rollback.")
    reason: str | None = Field(None, description="Why, in words.")
    actor: str | None = Field(None, description="Who moved it; None for the pipeline's own promotion.")
    at: str | None = Field(None, description="When.")


class ModelPage(BaseModel):
    """One registry: its versions, what is in production and how production moved."""

    name: str = Field(description="The registry's name.")
    production: int | None = Field(None, description="The version in production, if any.")
    sequence: int | None = Field(None, description="The production pointer's sequence (its CAS tag).")
    rollback_to: int | None = Field(None, description="The version a rollback would return to.")
    versions: list[ModelVersion] = Field(description="Every version, newest first.")
    history: list[PointerMove] = Field(description="Every move of the production pointer, newest first.")


def registry_names(root: str) -> list[str]:
    """The registries holding at least one version (the only names the pages answer for)."""
    return registry.names(root)


def _primary_value(entry: dict[str, Any]) -> float | None:
    value = (entry.get("metrics") or {}).get(entry.get("primary") or "")
    return value if isinstance(value, int | float) else None


def _summary(entry: dict[str, Any], live: int | None) -> VersionSummary:
    return VersionSummary(
        version=entry["version"],
        label=entry.get("label"),
        created_at=entry.get("created_at"),
        primary=entry.get("primary"),
        primary_value=_primary_value(entry),
        in_production=entry["version"] == live,
    )


def models_index(root: str) -> ModelsIndex:
    rows = []
    for name in registry_names(root):
        current = registry.pointer(root, name) or {}
        live = current.get("version")
        entries = registry.list_versions(root, name)
        rows.append(
            RegistrySummary(
                name=name,
                production=live,
                production_since=current.get("updated_at"),
                versions=[_summary(entry, live) for entry in reversed(entries)],
            )
        )
    return ModelsIndex(registries=rows)


def _run_link(entry: dict[str, Any]) -> RunLink | None:
    uri = entry.get("run_uri")
    if not uri:
        return None
    match = RUN_URI.search(uri)
    return RunLink(
        uri=uri,
        experiment=match["experiment"] if match else None,
        run=match["run"] if match else None,
        job_id=entry.get("job_id"),
    )


def _export_checks(entry: dict[str, Any], checks: dict[str, Any] | None) -> list[ExportCheck]:
    found = (checks or {}).get("formats") or {}
    rows = []
    for fmt, uri in sorted((entry.get("exports") or {}).items()):
        # gguf is checked per file (gguf-f16, gguf-q8_0): one row each, at the file's own uri.
        names = [fmt] if fmt in found else sorted(k for k in found if k.startswith(f"{fmt}-")) or [fmt]
        for name in names:
            check = found.get(name) or {}
            rows.append(
                ExportCheck(
                    format=name,
                    uri=check.get("uri") if name != fmt else uri,
                    passed=check.get("passed"),
                    problems=[str(problem) for problem in check.get("problems") or []],
                    metric_drop=check.get("metric_drop"),
                    next_token_agreement=check.get("next_token_agreement"),
                    max_logit_diff=check.get("max_logit_diff"),
                    size_bytes=check.get("size_bytes"),
                )
            )
    return rows


def _version(
    entry: dict[str, Any], live: int | None, decision: dict[str, Any] | None, checks: dict[str, Any] | None
) -> ModelVersion:
    base = entry.get("base_model") or {}
    dataset = entry.get("dataset") or {}
    return ModelVersion(
        version=entry["version"],
        label=entry.get("label"),
        created_at=entry.get("created_at"),
        base_model=base.get("name"),
        base_hub_id=base.get("hub_id"),
        dataset=dataset.get("name"),
        dataset_version=dataset.get("version"),
        hparams=entry.get("hparams") or {},
        metrics=entry.get("metrics") or {},
        primary=entry.get("primary"),
        model_uri=entry.get("model_uri"),
        adapter_uri=entry.get("adapter_uri"),
        checks_passed=entry.get("checks_passed"),
        exports=_export_checks(entry, checks),
        run=_run_link(entry),
        decision=Decision.model_validate(decision) if decision else None,
        in_production=entry["version"] == live,
    )


def _move(record: dict[str, Any]) -> PointerMove:
    return PointerMove(
        sequence=record["sequence"],
        version=record["version"],
        replaced=record.get("replaced"),
        action=record.get("action"),
        reason=record.get("reason"),
        actor=record.get("actor"),
        at=record.get("updated_at"),
    )


def model_page(root: str, name: str) -> ModelPage | None:
    """One registry in full; None when the store has no registry of that name."""
    if name not in registry_names(root):
        return None
    current = registry.pointer(root, name) or {}
    live = current.get("version")
    checks_by_run: dict[str, dict[str, Any] | None] = {}
    versions = []
    for entry in reversed(registry.list_versions(root, name)):
        run = entry.get("run_uri")
        if run and run not in checks_by_run:
            # One read per run, however many of its jobs were registered.
            checks_by_run[run] = store.committed_result(store.join(run, "check_export"))
        decision = registry.read_decision(root, name, entry["version"])
        versions.append(_version(entry, live, decision, checks_by_run.get(run) if run else None))
    return ModelPage(
        name=name,
        production=live,
        sequence=current.get("sequence"),
        rollback_to=current.get("previous"),
        versions=versions,
        history=[_move(record) for record in reversed(registry.history(root, name))],
    )
