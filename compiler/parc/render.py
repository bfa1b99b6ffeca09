"""Jinja rendering: StrictUndefined, quoting filters, and template errors located in the
template file (a template error is a bug in parc, reported as such)."""

from __future__ import annotations

import functools
import json
import re
import shlex
from typing import Any

from parc.resources import resource_dir

_VAR = re.compile(r"\$\((PARC_[A-Z0-9_]+)\)")  # only parc's own placeholders; users cannot write them


class TemplateBug(Exception):
    """A template failed to render: names the template file and line."""


def shell_quote(value: Any) -> str:
    """One shell word for ``value``, whatever it contains (single quotes, ``'\\''`` escapes)."""
    return shlex.quote(str(value))


def shell_word(value: Any) -> str:
    """Like shell_quote, but parc's ``$(PARC_*)`` placeholders become ``"${PARC_*}"``
    expansions; everything else, including any other ``$(...)``, stays literal."""
    text = str(value)
    parts = []
    pos = 0
    for m in _VAR.finditer(text):
        if m.start() > pos:
            parts.append(shlex.quote(text[pos:m.start()]))
        parts.append(f'"${{{m.group(1)}}}"')
        pos = m.end()
    if pos < len(text) or not parts:
        parts.append(shlex.quote(text[pos:]))
    return "".join(parts)


def shell_argv(argv: list[str]) -> str:
    """A whole argv as shell words, one element per word; each option starts a continued
    line with its value beside it (``--port 8000``), for reading."""
    lines: list[list[str]] = [[]]
    for a in argv:
        if a.startswith("-") and lines[-1]:
            lines.append([])
        lines[-1].append(shell_word(a))
    return " \\\n    ".join(" ".join(words) for words in lines)


def tojson(value: Any) -> str:
    """JSON text (also a valid YAML flow scalar): the safe way to put any string in YAML."""
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


def toyaml(value: Any) -> str:
    """Block YAML of plain data, deterministic (insertion order), every string quoted."""
    from parc.yamlout import dump

    return dump(value).rstrip("\n")


@functools.lru_cache(maxsize=None)
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(shell_quote=shell_quote, shell_word=shell_word, shell_argv=shell_argv, tojson=tojson,
                       toyaml=toyaml)
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``."""
    import jinja2

    try:
        return str(environment().get_template(template).render(**context))
    except jinja2.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f"templates/{template}" + (f":{line}" if line else "")
        raise TemplateBug(f"{where}: {type(exc).__name__}: {exc}") from exc
