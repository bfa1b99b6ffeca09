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
import re
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from parc.errors import Drift, DriftError, UsageError
from parc.targets import Artifact

MANIFEST = ".parc-manifest"


def manifest(artifacts: list[Artifact]) -> Artifact:
    """The manifest of ``artifacts``: every generated path with its SHA-256 and mode."""
    files = {a.path: {"sha256": hashlib.sha256(a.content.encode()).hexdigest(), "mode": f"{a.mode:o}"}
             for a in sorted(artifacts, key=lambda a: a.path)}
    return Artifact(MANIFEST, json.dumps({"generatedBy": "parc", "files": files}, indent=2) + "\n")


def _old_manifest(out: Path) -> dict[str, str]:
    """Path -> SHA-256 of what the previous compile generated (from its manifest; {} when
    there is none or it is not parc's: a manifest is only trusted as far as it parses)."""
    raw = read_bounded(out / MANIFEST, 16 << 20)
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return {}
    return {k: v["sha256"] for k, v in files.items()
            if isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("sha256"), str)}


def read_bounded(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file of at most ``limit`` bytes, never through a symlink; None
    for anything else (see :func:`parc.files.read_bounded`)."""
    from parc.files import InputError
    from parc.files import read_bounded as read

    try:
        return read(path, limit, follow_symlinks=False)
    except InputError:
        return None


def _sha(path: Path) -> str | None:
    raw = read_bounded(path, 64 << 20)
    return hashlib.sha256(raw).hexdigest() if raw is not None else None


def check_output_dir(raw: str, specs: list[Path]) -> Path:
    """See :func:`_check_output_dir`; file system errors (a name too long, a file as parent)
    are usage errors naming the path."""
    try:
        return _check_output_dir(raw, specs)
    except OSError as exc:
        raise UsageError(f"{raw}: cannot use it as the output directory: {exc.strerror or exc}") from None


def _check_output_dir(raw: str, specs: list[Path]) -> Path:
    """The output directory ``raw`` names, or UsageError (exit 2, nothing touched) when it is
    a place parc must not replace: '', '.', '/', a directory holding the working directory or a
    spec, or one with a file system mounted inside. A symlink is followed to its target."""
    if raw.strip() == "":
        raise UsageError("-o/--output is empty (an unset variable?); give the output directory, e.g. -o out/")
    out = Path(os.path.realpath(raw))
    cwd = Path(os.path.realpath(os.getcwd()))
    if out == Path(out.anchor) or out == cwd or cwd.is_relative_to(out):
        raise UsageError(f"{raw}: refusing to write into {out}: it holds the working directory "
                         f"({cwd}); give a subdirectory such as {raw.rstrip('/') or '.'}/out")
    for spec in specs:
        where = Path(os.path.realpath(spec)).parent
        if where.is_relative_to(out):
            raise UsageError(f"{raw}: refusing to write into {out}: it holds the spec {spec}; give another directory")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{raw}: exists and is not a directory")
    if out.is_dir():
        dev = out.stat().st_dev
        for root, dirs, _ in os.walk(out):
            for d in dirs:
                p = Path(root) / d
                if not p.is_symlink() and (os.path.ismount(p) or p.stat().st_dev != dev):
                    raise UsageError(f"{raw}: {p} is a mount point inside the output directory; parc will not "
                                     "copy or replace a mounted file system: unmount it or use another directory")
    return out


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


def _carry_foreign(out: Path, stage: Path, generated_before: dict[str, str], now: set[str]) -> list[str]:
    """Hard-link (or copy) every file parc did not generate from ``out`` into ``stage``, and
    every generated file that was edited since (its SHA-256 no longer the manifest's); symlinks
    are recreated as symlinks, never followed. Returns warnings for the kept edited files."""
    warnings = []
    for root, dirs, files in os.walk(out):
        rel_root = Path(root).relative_to(out)
        for d in list(dirs):
            src, target = Path(root) / d, stage / rel_root / d
            if src.is_symlink():  # a foreign directory symlink stays a symlink; it is not entered
                dirs.remove(d)
                target.parent.mkdir(parents=True, exist_ok=True)
                if (rel_root / d).as_posix() in now or any(n.startswith(f"{(rel_root / d).as_posix()}/") for n in now):
                    raise UsageError(f"{src}: is a symlink where parc writes files; move it away")
                os.symlink(os.readlink(src), target)
                continue
            if not target.exists():
                target.mkdir(parents=True)
                shutil.copymode(src, target)
        for f in files:
            rel = (rel_root / f).as_posix()
            if rel == MANIFEST:
                continue
            src = Path(root) / f
            if rel in generated_before:
                if os.path.islink(src) or _sha(src) == generated_before[rel]:
                    continue  # parc's own file, unchanged: replaced or removed
                if rel in now:
                    raise UsageError(f"{src}: was generated by parc but edited since (its sha256 differs from "
                                     f"{MANIFEST}); move it away or restore it, parc will not overwrite your edit")
                warnings.append(f"{src}: parc no longer generates it, but it was edited since: kept")
            elif rel in now:
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
                shutil.copy2(src, dst, follow_symlinks=False)
    return warnings


def _sweep_leftovers(out: Path) -> None:
    """Remove staging directories a killed compile left beside ``out`` (safe: we hold the
    lock, so no other compile is using them). Only parc's own names (``tempfile.mkdtemp``'s
    8-character suffix) match, whatever characters the output name holds."""
    own = re.compile(rf"^\.{re.escape(out.name)}\.parc-(new|old)-[A-Za-z0-9_]{{8}}$")
    for name in os.listdir(out.parent):
        p = out.parent / name
        if own.match(name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def write(out: Path, artifacts: list[Artifact]) -> None:
    """Replace the generated files in ``out`` with ``artifacts``, atomically. A file system
    error (read-only directory, a file where a directory must be, a name too long) is a
    UsageError naming the path, and leaves ``out`` as it was."""
    try:
        _write(out, artifacts)
    except OSError as exc:
        raise UsageError(f"{exc.filename or out}: cannot write the output: {exc.strerror or exc}") from None


def _write(out: Path, artifacts: list[Artifact]) -> None:
    arts = [a for a in artifacts if a.path != MANIFEST]
    _check_paths(arts)
    arts.append(manifest(arts))
    out = Path(os.path.realpath(out))
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    with _lock(out):
        _sweep_leftovers(out)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.parc-new-", dir=out.parent))
        try:
            _write_tree(stage, arts)
            if out.exists():
                for w in _carry_foreign(out, stage, _old_manifest(out), {a.path for a in arts}):
                    print(f"warning: {w}", file=sys.stderr)
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


def drift(out: Path, artifacts: list[Artifact]) -> tuple[str, list[Drift]]:
    """A unified diff between ``out`` and what would be written ('' when current), and one
    :class:`Drift` per differing path. The whole tree is compared: a file parc would not write
    is drift too. Files are read without following symlinks, bounded, regular files only; the
    content of anything else is never shown."""
    arts = [a for a in artifacts if a.path != MANIFEST]
    arts.append(manifest(arts))
    chunks: list[str] = []
    entries: list[Drift] = []

    def found(path: str, what: str, text: str | list[str]) -> None:
        entries.append(Drift(str(out / path), what))
        chunks.extend([text] if isinstance(text, str) else text)

    now = {a.path for a in arts}
    for a in sorted(arts, key=lambda a: a.path):
        p = out / a.path
        if p.is_symlink() or (p.exists() and not p.is_file()):
            found(a.path, "is not a regular file (a symlink or special file)",
                  f"not a regular file: {a.path} (a symlink or special file; its content is not read)\n")
            continue
        raw = read_bounded(p, 2 * len(a.content.encode()) + (1 << 20))
        try:
            old = raw.decode("utf-8") if raw is not None else None
        except UnicodeDecodeError:
            old = None
        if old is None:
            if not p.exists():
                found(a.path, "is missing", f"missing: {a.path}\n")
            else:
                found(a.path, "is unreadable (too large or not UTF-8)",
                      f"unreadable: {a.path} (too large or not UTF-8)\n")
            continue
        if old != a.content:
            lines = list(difflib.unified_diff(old.splitlines(keepends=True), a.content.splitlines(keepends=True),
                                              f"a/{a.path}", f"b/{a.path}"))
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            found(a.path, "differs from what `parc compile` would write", lines)
        elif stat.S_IMODE(p.stat().st_mode) != a.mode:
            found(a.path, f"has mode {stat.S_IMODE(p.stat().st_mode):o}, expected {a.mode:o}",
                  f"mode: {a.path} is {stat.S_IMODE(p.stat().st_mode):o}, expected {a.mode:o}\n")
    if out.is_dir() and not out.is_symlink():
        for root, dirs, files in os.walk(out):
            rel_root = Path(root).relative_to(out)
            for name in sorted(files) + sorted(d for d in dirs if (Path(root) / d).is_symlink()):
                rel = (rel_root / name).as_posix()
                if rel not in now:
                    kind = "symlink" if (Path(root) / name).is_symlink() else "file"
                    found(rel, f"is a {kind} parc would not write", f"extra: {rel} ({kind} parc would not write)\n")
            dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
    return "".join(chunks), entries


def check(out: Path, artifacts: list[Artifact], label: str | None = None) -> None:
    """Raise DriftError (exit 1) with the diff and the differing paths when ``out`` is not
    exactly current; paths are shown under ``label`` (the directory as the user named it)."""
    diff, entries = drift(Path(out), artifacts)
    if label is not None:
        entries = [Drift(os.path.join(label, os.path.relpath(e.file, out)), e.message) for e in entries]
    if entries:
        n = len(entries)
        raise DriftError(f"{out}: {n} file{'s differ' if n != 1 else ' differs'} from what `parc compile` would write",
                         diff, entries)


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
