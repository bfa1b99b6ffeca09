"""Stage 2, validate: a loaded Document -> a typed ServingSpec, or every problem at once.

pydantic checks structure, types and single fields; its errors are translated into
located, fixable sentences. Cross-field and catalog checks run in :mod:`parc.resolve`,
on whatever sections did validate, so one run reports as many problems as it can.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from parc.errors import Problem, SpecError
from parc.loader import Document, PathT, dotted
from parc.spec import SECTIONS, ServingSpec

_FIXES = {
    "apiVersion": "parc.dev/v1alpha1",
    "kind": "ServingSpec",
}


def validate(doc: Document) -> ServingSpec:
    """Validate the whole spec, raising SpecError with every located problem."""
    try:
        return ServingSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError(translate(exc, doc, ())) from None


def validate_sections(doc: Document) -> tuple[ServingSpec | None, dict[str, Any], list[Problem]]:
    """Validate the whole spec. When that fails, prune the fields that had errors and
    validate again (so cross-field checks can still run on everything else), then fall back
    to validating each section alone. Returns (spec or None, the valid sections by name,
    problems). A pruned spec is never returned as the spec: only its sections are."""
    try:
        spec = ServingSpec.model_validate(doc.data)
        return spec, {name: getattr(spec, name) for name in SECTIONS}, []
    except ValidationError as exc:
        problems = translate(exc, doc, ())
        bad = [_data_path(doc.data, tuple(e["loc"]), e["type"])[0] for e in exc.errors()]
    pruned = doc.data
    for _ in range(3):
        pruned = _prune(pruned, bad)
        try:
            partial = ServingSpec.model_validate(pruned)
            return None, {name: getattr(partial, name) for name in SECTIONS} | {"_spec": partial}, problems
        except ValidationError as exc:
            bad = [_data_path(pruned, tuple(e["loc"]), e["type"])[0] for e in exc.errors()]
            if not bad or all(not p for p in bad):
                break
    sections: dict[str, Any] = {}
    data = pruned if isinstance(pruned, dict) else {}
    for name, cls in SECTIONS.items():
        if name not in data:
            field = ServingSpec.model_fields[name]
            if field.is_required():
                continue
            sections[name] = field.get_default(call_default_factory=True)
            continue
        try:
            sections[name] = cls.model_validate(data[name])
        except ValidationError:
            pass
    return None, sections, problems


def _prune(data: Any, paths: list[PathT]) -> Any:
    """A copy of ``data`` without the nodes at ``paths`` (a failing list item's field is
    removed, not the item, so the other fields of that item still count)."""
    import copy

    out = copy.deepcopy(data)
    for path in sorted({p for p in paths if p}, key=len, reverse=True):
        node = out
        for part in path[:-1]:
            node = node[part]
        last = path[-1]
        if isinstance(node, dict) and last in node:
            del node[last]
        elif isinstance(node, list) and isinstance(last, int) and last < len(node):
            node.pop(last)
    return out


def translate(exc: ValidationError, doc: Document, prefix: PathT) -> list[Problem]:
    """pydantic errors -> located Problems, one per data path (union branches merged)."""
    grouped: dict[PathT, list[dict[str, Any]]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(prefix) + tuple(err["loc"])
        path, rest = _data_path(doc.data, loc, err["type"])
        grouped.setdefault(path, []).append({**err, "rest": rest})
    problems = []
    for path, errs in grouped.items():
        problems.append(_problem(doc, path, errs))
    return problems


def _data_path(data: Any, loc: tuple[Any, ...], etype: str) -> tuple[PathT, tuple[Any, ...]]:
    """Split a pydantic loc into the part that exists in the data and the rest (union tags,
    a missing field's name)."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        else:
            return tuple(path), tuple(loc[i:])
    return tuple(path), ()


def _problem(doc: Document, path: PathT, errs: list[dict[str, Any]]) -> Problem:
    first = errs[0]
    etype = first["type"]
    if etype == "missing":
        field = first["rest"][0] if first["rest"] else path[-1]
        full = path + (field,)
        hint = f" (e.g. {field}: {_FIXES[str(field)]})" if str(field) in _FIXES else _required_hint(full)
        return Problem(doc.locate(path), dotted(full), f"required field is missing{hint}")
    if etype == "extra_forbidden":
        allowed = _allowed_fields(path[:-1])
        key = str(path[-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if not close:
            close = [a for a in allowed if a.lower() == key.lower()]
        hint = f"; did you mean {close[0]!r}?" if close else (
            f"; allowed here: {', '.join(allowed)}" if allowed else "")
        return Problem(doc.locate(path, key=True), dotted(path), f"unknown field {key!r}{hint}")
    if len(errs) > 1 and all(e["rest"] for e in errs):
        # a union (e.g. "an int or a list of ints") failed in every branch
        value = _value_at(doc.data, path)
        inner = [e for e in errs if len(e["rest"]) > 1]
        if isinstance(value, list) and inner:
            return _problem(doc, path + (inner[0]["rest"][1],) if isinstance(inner[0]["rest"][1], int) else path,
                            [{**inner[0], "rest": ()}])
        return Problem(doc.locate(path), dotted(path),
                       f"expected a positive integer or a list of them, got {_kind(value)}")
    return Problem(doc.locate(path), dotted(path), _message(first, _value_at(doc.data, path)))


def _value_at(data: Any, path: PathT) -> Any:
    node = data
    for part in path:
        node = node[part]
    return node


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return type(value).__name__


def _message(err: dict[str, Any], value: Any) -> str:
    etype: str = err["type"]
    ctx = err.get("ctx") or {}
    got = _kind(value)
    simple = {
        "int_type": "expected an integer",
        "int_from_float": "expected a whole number",
        "int_parsing": "expected an integer",
        "float_type": "expected a number",
        "string_type": "expected a string (quote it)",
        "bool_type": "expected true or false",
        "list_type": "expected a list",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
    }
    if etype in simple:
        return f"{simple[etype]}, got {got}"
    if etype == "literal_error":
        expected = ctx.get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",") if o.strip()]
        close = difflib.get_close_matches(str(value).lower(), [o.lower() for o in options], n=1, cutoff=0.5)
        hint = ""
        if close:
            hint = f"; did you mean {next(o for o in options if o.lower() == close[0])!r}?"
        return f"must be one of {' | '.join(options)}, got {got}{hint}"
    if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[etype]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}, got {got}"
    if etype == "finite_number":
        return f"must be a finite number, got {got}"
    if etype in ("too_short", "string_too_short"):
        n = ctx.get("min_length", 1)
        return "must not be empty" if n == 1 else f"needs at least {n} items"
    if etype in ("too_long", "string_too_long"):
        return f"is too long: at most {ctx.get('max_length')} {'characters' if etype.startswith('string') else 'items'}"
    if etype == "string_pattern_mismatch":
        return f"{got} has the wrong form (must match {ctx.get('pattern')})"
    if etype == "value_error":
        msg = str(err["msg"])
        return msg.removeprefix("Value error, ")
    if etype == "union_tag_invalid":
        return f"unexpected value {got}"
    return f"{err['msg']} (got {got})"


def _required_hint(path: PathT) -> str:
    field = _field_info(path)
    if field is not None and field.description:
        return f": {field.description}"
    return ""


def _unwrap(tp: Any) -> list[Any]:
    """Model classes reachable from an annotation (through Optional, list, dict, unions)."""
    origin = typing.get_origin(tp)
    if origin is None:
        return [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []
    out: list[Any] = []
    for arg in typing.get_args(tp):
        out += _unwrap(arg)
    return out


def _model_at(path: PathT) -> type[BaseModel] | None:
    model: type[BaseModel] | None = ServingSpec
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = _by_alias(model).get(part)
        if field is None:
            return None
        found = _unwrap(field.annotation)
        model = found[0] if found else None
    return model


def _by_alias(model: type[BaseModel]) -> dict[str, Any]:
    return {(f.alias or n): f for n, f in model.model_fields.items()}


def _allowed_fields(path: PathT) -> list[str]:
    model = _model_at(path)
    return sorted(_by_alias(model)) if model is not None else []


def _field_info(path: PathT) -> Any:
    model = _model_at(path[:-1])
    if model is None:
        return None
    return _by_alias(model).get(str(path[-1]))


__all__ = ["validate", "validate_sections", "translate"]
