"""Output targets behind one small interface and a registry.

A target turns the resolved spec, the solver's result and the plan document into files.
Adding one (SGLang, another scheduler) is a new module here plus a template folder: the
registry below is the only list to edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from parc.plan import Plan, PlanGroup
    from parc.resolve import Resolved


#: CPU cores reserved per GPU (Kubernetes requests, SLURM steps): tokenisation, scheduling and
#: weight loading go through the host.
CPU_PER_GPU = 4


@dataclass(frozen=True)
class Artifact:
    """One output file: path relative to the output directory, bytes, permission bits."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class Inputs:
    """What every target builder receives: the resolved spec (deploy settings) and the typed plan."""

    res: Resolved
    plan: Plan

    def groups_for(self, scheduler: str) -> list[PlanGroup]:
        """Plan groups a scheduler target renders: those on pools with that scheduler, or
        every group when no pool names it (the target was asked for explicitly)."""
        mine = [g for g in self.plan.groups if g.pool.scheduler == scheduler]
        return mine or list(self.plan.groups)


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
    """plan.json and PLAN.md (for reviewers) plus every requested target's files, sorted by path."""
    from parc.report import to_json
    from parc.review import markdown

    arts = [Artifact("plan.json", to_json(inputs.plan.document)), Artifact("PLAN.md", markdown(inputs.plan))]
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
