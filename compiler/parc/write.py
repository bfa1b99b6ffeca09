"""Stage 7, write: put rendered files into the output directory atomically, or compare
them with it (``--check``).

The new tree is built in a temporary directory beside the output directory (same file
system), files parc did not generate are hard-linked into it, and the two directories are
exchanged in one ``renameat2(RENAME_EXCHANGE)`` (Linux); elsewhere two renames. A failed
or killed compile therefore leaves the previous output whole, and a reader never sees a
mix. A lock file serialises concurrent compiles into the same directory. Which files
parc generated is recorded in ``.parc-manifest`` so stale ones are removed and foreign
ones are kept.
"""

from __future__ import annotations

import ctypes
import difflib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from parc.errors import DriftError, UsageError
from parc.targets import Artifact

MANIFEST = ".parc-manifest"


def manifest(artifacts: list[Artifact]) -> Artifact:
    """The manifest of ``artifacts``: every generated path with its SHA-256 and mode."""
    files = {a.path: {"sha256": hashlib.sha256(a.content.encode()).hexdigest(), "mode": f"{a.mode:o}"}
             for a in sorted(artifacts, key=lambda a: a.path)}
    return Artifact(MANIFEST, json.dumps({"generatedBy": "parc", "files": files}, indent=2) + "\n")


def _old_generated(out: Path) -> set[str]:
    try:
        data = json.loads((out / MANIFEST).read_text())
        return set(data.get("files", {}))
    except (OSError, ValueError, AttributeError):
        return set()


def _check_paths(artifacts: list[Artifact]) -> None:
    for a in artifacts:
        p = Path(a.path)
        if p.is_absolute() or ".." in p.parts or not a.path:
            raise AssertionError(f"artifact path {a.path!r} escapes the output directory")


@contextmanager
def _lock(out: Path) -> Iterator[None]:
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out.parent / f".{out.name}.parc-lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP if hasattr(errno, "ENOTSUP") else errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_tree(stage: Path, artifacts: list[Artifact]) -> None:
    for a in artifacts:
        dest = stage / a.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(dest.parent, 0o755)
        with open(dest, "wb") as fh:
            fh.write(a.content.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(dest, a.mode)


def _carry_foreign(out: Path, stage: Path, generated_before: set[str], now: set[str]) -> None:
    """Hard-link (or copy) every file parc did not generate from ``out`` into ``stage``."""
    for root, dirs, files in os.walk(out):
        rel_root = Path(root).relative_to(out)
        for d in dirs:
            target = stage / rel_root / d
            if not target.exists():
                target.mkdir(parents=True)
                shutil.copymode(Path(root) / d, target)
        for f in files:
            rel = (rel_root / f).as_posix()
            if rel == MANIFEST or rel in generated_before:
                continue
            if rel in now:
                raise UsageError(f"{out / rel}: exists and was not written by parc; move it away or delete it, "
                                 "parc will not overwrite it")
            src, dst = Path(root) / f, stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def _sweep_leftovers(out: Path) -> None:
    """Remove staging directories a killed compile left beside ``out`` (safe: we hold the
    lock, so no other compile is using them)."""
    for p in out.parent.glob(f".{out.name}.parc-*-*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def write(out: Path, artifacts: list[Artifact]) -> None:
    """Replace the generated files in ``out`` with ``artifacts``, atomically."""
    arts = [a for a in artifacts if a.path != MANIFEST]
    _check_paths(arts)
    arts.append(manifest(arts))
    out = Path(os.path.abspath(out))
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    with _lock(out):
        _sweep_leftovers(out)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.parc-new-", dir=out.parent))
        try:
            _write_tree(stage, arts)
            if out.exists():
                _carry_foreign(out, stage, _old_generated(out), {a.path for a in arts})
                os.chmod(stage, stat.S_IMODE(out.stat().st_mode))
                if _exchange(stage, out):
                    shutil.rmtree(stage)
                else:
                    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.parc-old-", dir=out.parent))
                    os.rmdir(old)
                    os.rename(out, old)
                    os.rename(stage, out)
                    shutil.rmtree(old)
            else:
                os.chmod(stage, 0o755)
                os.rename(stage, out)
            _fsync_dir(out.parent)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise


def drift(out: Path, artifacts: list[Artifact]) -> str:
    """A unified diff between ``out`` and what would be written ('' when current)."""
    arts = [a for a in artifacts if a.path != MANIFEST]
    arts.append(manifest(arts))
    chunks: list[str] = []
    for a in sorted(arts, key=lambda a: a.path):
        p = out / a.path
        try:
            old = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            old = None
        if old is None:
            chunks.append(f"missing: {a.path}\n")
            continue
        if old != a.content:
            chunks += difflib.unified_diff(old.splitlines(keepends=True), a.content.splitlines(keepends=True),
                                           f"a/{a.path}", f"b/{a.path}")
            if chunks and not chunks[-1].endswith("\n"):
                chunks[-1] += "\n"
        elif stat.S_IMODE(p.stat().st_mode) != a.mode:
            chunks.append(f"mode: {a.path} is {stat.S_IMODE(p.stat().st_mode):o}, expected {a.mode:o}\n")
    now = {a.path for a in arts}
    for stale in sorted(_old_generated(out) - now):
        if (out / stale).exists():
            chunks.append(f"stale: {stale} (parc no longer generates it)\n")
    return "".join(chunks)


def check(out: Path, artifacts: list[Artifact]) -> None:
    """Raise DriftError (exit 1) with the diff when ``out`` is not exactly current."""
    diff = drift(Path(out), artifacts)
    if diff:
        n = sum(1 for line in diff.splitlines() if line.startswith(("+++ ", "missing: ", "stale: ", "mode: ")))
        raise DriftError(f"{out}: {n} file{'s' if n != 1 else ''} differ from what `parc compile` would write", diff)


def write_file(path: Path, artifact: Artifact) -> None:
    """Write one file atomically (temp file in the same directory, then rename)."""
    path = Path(os.path.abspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(artifact.content.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, artifact.mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
