"""Engine capabilities and versioned CLI flag tables (data in this folder)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parc._toml import tomllib

DATA = Path(__file__).resolve().parent

ENGINES = ("vllm", "trtllm", "tgi")


@dataclass(frozen=True)
class Capabilities:
    """What an engine can express."""

    name: str
    display: str
    precisions: tuple[str, ...]
    kv_cache: tuple[str, ...]
    pipeline_parallel: bool
    expert_parallel: bool
    dp_attention: bool
    multi_node: bool
    vendors: tuple[str, ...]
    weight_only_fallback: bool
    source: str


@functools.lru_cache(maxsize=None)
def capabilities() -> dict[str, Capabilities]:
    with open(DATA / "capabilities.toml", "rb") as fh:
        raw = tomllib.load(fh)
    out = {}
    for name in ENGINES:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw[name].items()}
        out[name] = Capabilities(name=name, **fields)
    return out
