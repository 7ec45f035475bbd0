"""What `compose up` changes to make tursid's deployments match the file, decided from what tursid lists.

A deployment belongs to a project by its ``com.tursi.compose.project`` label and runs the configuration whose hash
its ``com.tursi.compose.config-hash`` label holds. For each model of the file: absent -> create; present with the
same hash and not stopped -> keep (not restarted); a different hash, or exited/failed -> recreate (down, then up).
A deployment of the project that the file no longer has -> remove. A deployment of the same name that belongs to
another project, or to none (`tursi up`), is never touched: `up` refuses before changing anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tursi.compose.entry import ComposeModel
from tursi.compose.project import HASH_LABEL, PROJECT_LABEL, ComposeProject
from tursi.core.errors import DeploymentExists
from tursi.core.names import is_replica

STOPPED = ("exited", "failed")
CREATE, RECREATE, KEEP, REMOVE = "create", "recreate", "keep", "remove"


@dataclass(frozen=True)
class Action:
    kind: str  # create | recreate | keep | remove
    name: str
    model: ComposeModel | None = None  # None for remove
    reason: str = ""


def labels_of(dep: Any) -> dict[str, str]:
    return dict((dep.get("options") or {}).get("labels") or {})


def project_of(dep: Any) -> str | None:
    return labels_of(dep).get(PROJECT_LABEL)


def of_project(deployments: Iterable[Any], project: str) -> list[Any]:
    """The deployments that ``project`` made, in tursid's order."""
    return [d for d in deployments if project_of(d) == project and not is_replica(d["name"])]


def plan_up(project: ComposeProject, deployments: Sequence[Any]) -> list[Action]:
    """The actions that converge ``deployments`` (tursid's list, stopped ones included) to ``project``:
    removals first (they free names and ports), then each model in the file's order."""
    by_name = {d["name"]: d for d in deployments}
    for model in project.models:
        _check_owner(by_name.get(model.name), project.name)
    actions = [
        Action(REMOVE, d["name"], reason="not in the file")
        for d in of_project(deployments, project.name)
        if project.model(d["name"]) is None
    ]
    return actions + [_action(model, by_name.get(model.name)) for model in project.models]


def _action(model: ComposeModel, dep: Any) -> Action:
    if dep is None:
        return Action(CREATE, model.name, model)
    if labels_of(dep).get(HASH_LABEL) != model.config_hash:
        return Action(RECREATE, model.name, model, "configuration changed")
    if dep.get("status") in STOPPED:
        return Action(RECREATE, model.name, model, f"it had {dep['status']}")
    return Action(KEEP, model.name, model)


def _check_owner(dep: Any, project: str) -> None:
    if dep is None:
        return
    owner = project_of(dep)
    if owner == project:
        return
    whose = f"belongs to compose project {owner!r}" if owner else "was not made by compose (`tursi up`)"
    raise DeploymentExists(
        f"a deployment named {dep['name']!r} exists and {whose}: this project does not touch it",
        hint=f"rename the model in the file, or remove it with `tursi down {dep['name']}`",
    )
