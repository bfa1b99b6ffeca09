"""A small deterministic YAML emitter for plain data (dict, list, str, int, float, bool, None).

Every string is double-quoted with YAML escapes, so no user string can change the
document's structure (``: ``, ``- ``, ``#``, ``&``, ``*``, ``!!tag``, newlines, NUL); key
order is insertion order; output is byte-identical for equal input.
"""

from __future__ import annotations

import math
from typing import Any

_ESC = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def quote(text: str) -> str:
    """A YAML double-quoted scalar for ``text`` (printable characters kept, the rest escaped)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESC:
            out.append(_ESC[ch])
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif code in (0x2028, 0x2029, 0xFEFF) or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite float in YAML output")
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    raise TypeError(f"cannot emit {type(value).__name__} as YAML")


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        out = []
        for k, v in value.items():
            key = quote(str(k)) if not _plain_key(k) else str(k)
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{key}:")
                out += _lines(v, indent + 2 if isinstance(v, dict) else indent)
            else:
                out.append(f"{pad}{key}: {_inline(v)}")
        return out
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                sub = _lines(item, indent + 2)
                out.append(f"{pad}- {sub[0].lstrip()}")
                out += sub[1:]
            else:
                out.append(f"{pad}- {_inline(item)}")
        return out
    return [pad + scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def _plain_key(key: Any) -> bool:
    """Keys parc itself writes (Kubernetes field names) stay plain; anything else is quoted."""
    return isinstance(key, str) and key.replace("-", "").replace("_", "").replace(".", "").replace("/", "").isalnum() \
        and key[0].isalpha() and key.isascii() and key.lower() not in ("true", "false", "null", "yes", "no", "on", "off", "y", "n")


def dump(value: Any) -> str:
    """Block-style YAML text of ``value`` ending in a newline."""
    return "\n".join(_lines(value, 0)) + "\n"


def dump_all(docs: list[Any]) -> str:
    """A multi-document stream (``---`` between documents)."""
    return "".join(("---\n" if i else "") + dump(d) for i, d in enumerate(docs))
