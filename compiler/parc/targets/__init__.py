"""Output targets behind one small interface and a registry.

A target turns the resolved spec, the solver's result and the plan document into files.
Adding one (SGLang, another scheduler) is a new module here plus a template folder: the
registry below is the only list to edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from parc.resolve import Resolved
    from parc.solver import Result


@dataclass(frozen=True)
class Artifact:
    """One output file: path relative to the output directory, bytes, permission bits."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class Inputs:
    """What every target builder receives."""

    res: Resolved
    result: Result
    plan: dict[str, Any]

    def groups_for(self, scheduler: str) -> list[int]:
        """Plan groups a scheduler target renders: those on pools with that scheduler, or
        every group when no pool names it (the target was asked for explicitly)."""
        groups = self.result.best.groups
        mine = [i for i, g in enumerate(groups) if g.cand.pool.scheduler == scheduler]
        return mine or list(range(len(groups)))

    def stem(self, group: int) -> str:
        """File stem of a plan group: the spec name, suffixed with the pool when the plan
        has several groups."""
        name = self.res.spec.metadata.name
        groups = self.result.best.groups
        return name if len(groups) == 1 else f"{name}-{groups[group].cand.pool.name}"


Builder = Callable[[Inputs], list[Artifact]]


def registry() -> dict[str, Builder]:
    """Target name -> builder. Imported lazily so `parc --help` stays fast."""
    from parc.targets import launch, slurm

    reg: dict[str, Builder] = {"launch": launch.build, "slurm": slurm.build}
    try:
        from parc.targets import kubernetes
    except ImportError:  # pragma: no cover - the kubernetes targets ship with parc
        return reg
    reg.update(kubernetes=kubernetes.build_manifests, helm=kubernetes.build_values)
    return reg


def build(inputs: Inputs, targets: tuple[str, ...]) -> list[Artifact]:
    """plan.json plus every requested target's files, sorted by path."""
    from parc.report import to_json

    arts = [Artifact("plan.json", to_json(inputs.plan))]
    reg = registry()
    for t in targets:
        if t not in reg:
            from parc.errors import UsageError

            raise UsageError(f"target {t!r} is not available in this parc build")
        arts += reg[t](inputs)
    paths = [a.path for a in arts]
    dup = sorted({p for p in paths if paths.count(p) > 1})
    if dup:
        raise AssertionError(f"two targets wrote {dup}")
    return sorted(arts, key=lambda a: a.path)
