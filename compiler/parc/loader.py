"""Stage 1, load: read a YAML spec into plain Python data, keeping line:column of every node.

ruamel.yaml's round-trip loader records positions; we convert its tree into plain dicts,
lists and scalars (so no ruamel types leak into later stages) and keep a side table from
each node's path to where it stood in the file. Hostile input is bounded here: file size,
node count (alias bombs) and nesting depth.
"""

from __future__ import annotations

import datetime
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parc.errors import Location, Problem, SpecError, UsageError

#: Largest spec parc reads. Real specs are a few KiB; the cap keeps a runaway file from
#: costing minutes in the YAML parser.
MAX_SPEC_BYTES = 1 << 20
#: Most nodes (mappings, sequences, scalars) a spec may expand to, counting every alias
#: use: a "billion laughs" document stops here instead of exhausting memory.
MAX_NODES = 100_000
#: Deepest nesting parc accepts; a spec is five levels deep.
MAX_DEPTH = 64

PathT = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A loaded spec: plain data plus where each node came from.

    ``values`` maps a path such as ``("cluster", "pools", 0, "gpu")`` to the 1-based
    (line, column) of the value; ``keys`` maps the same path to the position of the key.
    """

    file: str
    data: Any
    values: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathT, tuple[int, int]] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the spec (``configPath``) are resolved against."""
        return Path(self.file).resolve().parent

    def locate(self, path: PathT, *, key: bool = False) -> Location:
        """Best position for ``path``: the key (when asked and known), else the value, else
        the nearest enclosing node that has a position."""
        p = tuple(path)
        while True:
            if key and p in self.keys:
                return Location(self.file, *self.keys[p])
            if p in self.values:
                return Location(self.file, *self.values[p])
            if not p:
                return Location(self.file, 1, 1)
            p = p[:-1]
            key = True


def read_text(path: Path) -> str:
    """Read a spec file as UTF-8 text (a BOM is allowed), with one clear error per failure."""
    from parc.files import InputError, read_bounded

    name = str(path)
    if not path.exists():
        raise UsageError(f"{name}: no such file")
    if path.is_dir():
        raise UsageError(f"{name}: is a directory, expected a spec file")
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                [Problem(Location(name), "", f"file is {size / 1048576:.1f} MiB; parc reads specs of at most "
                         f"{MAX_SPEC_BYTES // 1048576} MiB")]
            )
        raw = read_bounded(path, MAX_SPEC_BYTES)  # counted while reading: /dev/zero reports 0 bytes
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except InputError as exc:
        raise UsageError(str(exc)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            [Problem(Location(name, line, col), "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8")]
        ) from None


def load_file(path: str | Path) -> Document:
    """Load the spec at ``path``. Raises UsageError or SpecError (exit 2), never a traceback."""
    p = Path(path)
    return load_text(read_text(p), str(path))


def load_text(text: str, name: str = "<spec>") -> Document:
    """Parse YAML ``text`` (reported as ``name``) into a :class:`Document`."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise SpecError([Problem(Location(name), "", f"spec is larger than {MAX_SPEC_BYTES // 1048576} MiB")])
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        with warnings.catch_warnings():  # e.g. ReusedAnchorWarning: legal YAML, not parc's business
            warnings.simplefilter("ignore")
            tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        what = _yaml_problem(exc)
        raise SpecError([Problem(Location(name, line, col), "", what)]) from None
    except YAMLError as exc:  # reader errors (control characters) carry a position too
        pos = getattr(exc, "position", None)
        line, col = _offset_to_line_col(text, pos) if isinstance(pos, int) else (0, 0)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError([Problem(Location(name, line, col), "", f"invalid YAML: {first}")]) from None
    except RecursionError:
        raise SpecError([Problem(Location(name), "", f"nesting is deeper than {MAX_DEPTH} levels")]) from None
    except ValueError as exc:  # an integer of thousands of digits (Python's int-from-string limit)
        raise SpecError([Problem(Location(name), "", "a number has too many digits (over 4,300); no spec field "
                                 "needs more than 20") if "digits" in str(exc) else
                         Problem(Location(name), "", f"invalid YAML: {exc}")]) from None
    except AssertionError as exc:  # ruamel asserts on directives it does not know (%YAML 1.3)
        raise SpecError([Problem(Location(name, 1, 1), "", f"unsupported YAML ({exc}); parc reads YAML 1.2 "
                                 "(and 1.1) documents: remove the %YAML directive")]) from None
    if tree is None:
        raise SpecError([Problem(Location(name, 1, 1), "", "spec is empty; start from an example in examples/")])
    doc = Document(name, None)
    data = _convert(tree, (), doc, [0], 0)
    doc = Document(name, data, doc.values, doc.keys)
    if not isinstance(data, dict):
        raise SpecError(
            [Problem(Location(name, 1, 1), "", f"a spec is a mapping (apiVersion:, kind:, ...), got {_kind(data)}")]
        )
    return doc


def _yaml_problem(exc: Any) -> str:
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    if "found duplicate key" in problem or type(exc).__name__ == "DuplicateKeyError":
        return f"invalid YAML: {problem.splitlines()[0]} (each key may appear once in a mapping)"
    if "found character '\\t'" in problem:
        return "invalid YAML: a tab character; YAML indents with spaces only"
    return f"invalid YAML: {problem.splitlines()[0]}"


def _offset_to_line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return type(value).__name__


def _convert(node: Any, path: PathT, doc: Document, count: list[int], depth: int) -> Any:
    """Turn a ruamel node into plain data, recording positions. ``count`` is a one-element
    counter shared by the whole walk (aliases are expanded, so bombs are caught here)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

    count[0] += 1
    if count[0] > MAX_NODES:
        raise SpecError(
            [Problem(doc.locate(path), _dotted(path), f"spec expands to more than {MAX_NODES} nodes "
                     "(an alias bomb?); parc specs are small")]
        )
    if depth > MAX_DEPTH:
        raise SpecError([Problem(doc.locate(path), _dotted(path), f"nesting is deeper than {MAX_DEPTH} levels")])
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        if getattr(node, "merge", None):
            raise SpecError([Problem(doc.locate(path), _dotted(path) or "spec",
                                     "YAML merge keys (<<) are not allowed in a spec; write the fields out")])
        for k in node:
            try:
                kpos = node.lc.key(k)
                vpos = node.lc.value(k)
            except KeyError:  # a key merged in by `<<: *anchor` has no position of its own
                raise SpecError([Problem(doc.locate(path), _dotted(path) or "spec",
                                         f"YAML merge keys (<<) are not allowed in a spec (key {str(k)!r} came "
                                         "from one); write the fields out")]) from None
            key = k if isinstance(k, str) else _scalar(k)
            sub = path + (str(key),)
            doc.keys[sub] = (kpos[0] + 1, kpos[1] + 1)
            doc.values[sub] = (vpos[0] + 1, vpos[1] + 1)
            if not isinstance(key, str):
                raise SpecError([Problem(doc.locate(sub, key=True), _dotted(path),
                                         f"keys must be strings, got {_kind(key)}; quote it")])
            out[str(key)] = _convert(node[k], sub, doc, count, depth + 1)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for i, item in enumerate(node):
            line, col = node.lc.item(i)
            doc.values[path + (i,)] = (line + 1, col + 1)
            items.append(_convert(item, path + (i,), doc, count, depth + 1))
        return items
    if isinstance(node, TaggedScalar) or (hasattr(node, "tag") and getattr(node.tag, "value", None)):
        tag = getattr(getattr(node, "tag", None), "value", None) or "?"
        raise SpecError([Problem(doc.locate(path), _dotted(path),
                                 f"YAML tag {tag!s} is not allowed in a spec; remove the tag")])
    return _scalar(node)


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value if value is None else bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _dotted(path: PathT) -> str:
    """``("cluster", "pools", 0, "gpu")`` -> ``cluster.pools[0].gpu``; odd keys are quoted
    (``labels["a b"]``)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += ("." if out else "") + part
        else:
            out += f"[{json.dumps(part)}]"
    return out


dotted = _dotted
