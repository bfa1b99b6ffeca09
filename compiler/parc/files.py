"""Reading input files (specs, config.json, calibration YAML, calibrate CSV, manifests) safely:
regular files only (a FIFO or device is refused before it can block or flood), never through a
symlink where the caller asks so, and a byte bound counted while reading (``stat`` is not
trusted: /proc and /dev files report 0 bytes)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class InputError(ValueError):
    """An input file parc will not read; the message names the path and the reason."""


def read_bounded(path: Path, limit: int, *, follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them, or InputError."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InputError(f"{path}: is a directory, expected a file")
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: is not a regular file (a FIFO, socket or device); parc reads regular files only")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > limit:
                raise InputError(f"{path}: larger than {limit // 1048576} MiB; parc reads at most that much")
            chunks.append(chunk)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
