"""The stages joined: spec file -> plan document (and, for compile, rendered files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parc import plan as plan_stage
from parc.resolve import load_and_resolve
from parc.solver import solve


def make_plan(path: str | Path, top: int = 5) -> dict[str, Any]:
    """Load, validate, resolve and solve the spec at ``path``; return plan.json as a dict."""
    res = load_and_resolve(path)
    result = solve(res, top=top)
    return plan_stage.build(res, result)
