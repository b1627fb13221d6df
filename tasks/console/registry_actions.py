"""Promote a version to production and roll production back, as the Models pages do them: first a plan
(what will change, and the pointer's sequence the person saw), then the change, made only while the
pointer still holds that sequence.

The change goes through the registry's own compare-and-swap (`set_production`, `rollback`), so a
concurrent move (another person, the pipeline's promotion) makes this one lose cleanly: nothing is
written and the outcome says what production is now. Who made the change is kept in the pointer's
history (`actor`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tasks.registry import versions as registry
from tasks.registry.production import PointerMoved


class ProductionChange(BaseModel):
    """What a promote or a rollback would do, shown before the person confirms it."""

    registry: str = Field(description="The registry's name.")
    action: Literal["promote", "rollback"] = Field(description="What is asked for.")
    current: int | None = Field(None, description="The version in production now (None: nothing).")
    target: int | None = Field(None, description="The version production would point at.")
    expected: int | None = Field(None, description="The pointer's sequence now; the change needs it kept.")
    target_label: str | None = Field(None, description="The target version's job label.")
    problem: str | None = Field(None, description="Why the change cannot be made, in words (None: it can).")


class Outcome(BaseModel):
    """What came of a confirmed change."""

    done: bool = Field(description="Production moved.")
    message: str = Field(description="What happened, in words.")
    sequence: int | None = Field(None, description="The pointer's sequence after the move, when done.")


def plan_promotion(root: str, name: str, version: int) -> ProductionChange | None:
    """What promoting `version` would change; None when the registry has no such version."""
    entry = registry.get_version(root, name, version)
    if entry is None:
        return None
    current = registry.pointer(root, name)
    live = current["version"] if current else None
    return ProductionChange(
        registry=name,
        action="promote",
        current=live,
        target=version,
        expected=current["sequence"] if current else None,
        target_label=entry.get("label"),
        problem=f"version {version} is already in production; nothing to change" if live == version else None,
    )


def plan_rollback(root: str, name: str) -> ProductionChange:
    """What rolling production back would change (`problem` says why it cannot)."""
    current = registry.pointer(root, name)
    if current is None:
        return ProductionChange(
            registry=name, action="rollback", problem="nothing is in production yet, so nothing to roll back"
        )
    target = current.get("previous")
    entry = registry.get_version(root, name, target) if target is not None else None
    return ProductionChange(
        registry=name,
        action="rollback",
        current=current["version"],
        target=target,
        expected=current["sequence"],
        target_label=entry.get("label") if entry else None,
        problem=None
        if target is not None
        else f"version {current['version']} has no earlier production version to roll back to; "
        "promote a version by number instead",
    )


def _lost(root: str, name: str) -> Outcome:
    now = registry.pointer(root, name)
    where = f"version {now['version']}" if now else "nothing"
    by = f" (moved by {now['actor']})" if now and now.get("actor") else ""
    return Outcome(
        done=False,
        message=f"Production of '{name}' changed since this page was shown: it is now {where}{by}. "
        "Nothing was written; look again and confirm if the change is still wanted.",
    )


def _done(root: str, name: str, verb: str) -> Outcome:
    now = registry.pointer(root, name) or {}
    return Outcome(
        done=True,
        message=f"Production of '{name}' {verb} version {now.get('version')}.",
        sequence=now.get("sequence"),
    )


def promote(root: str, name: str, version: int, expected: int | None, actor: str) -> Outcome:
    """Point production at `version` if the pointer still holds the sequence the person saw."""
    plan = plan_promotion(root, name, version)
    if plan is None:
        return Outcome(done=False, message=f"Registry '{name}' has no version {version}.")
    if plan.expected != expected:
        return _lost(root, name)
    if plan.problem:
        return Outcome(done=False, message=plan.problem[0].upper() + plan.problem[1:] + ".")
    reason = f"promoted by {actor} in the tunerflow UI"
    if not registry.set_production(root, name, version, expected, reason=reason, actor=actor):
        return _lost(root, name)
    return _done(root, name, "is now")


def roll_back(root: str, name: str, expected: int | None, actor: str) -> Outcome:
    """Roll production back one step if the pointer still holds the sequence the person saw."""
    plan = plan_rollback(root, name)
    if plan.expected != expected:
        return _lost(root, name)
    if plan.problem:
        return Outcome(done=False, message=f"Cannot roll back '{name}': {plan.problem}.")
    try:
        registry.rollback(root, name, actor=actor, expected=expected)
    except PointerMoved:
        return _lost(root, name)
    except registry.RegistryError as error:
        return Outcome(done=False, message=str(error))
    return _done(root, name, "rolled back to")
