"""Locate the shipped resources: templates/, schemas/ and charts/.

In a wheel they live inside the package (``parc/_resources/``, see pyproject.toml); in a
source checkout or editable install they are the repository's top-level folders.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Path of the ``templates``, ``schemas`` or ``charts`` folder."""
    for base in (_PKG / "_resources", _PKG.parent.parent):
        path = base / name
        if path.is_dir():
            return path
    raise FileNotFoundError(f"parc resource folder {name!r} not found; reinstall parc")
