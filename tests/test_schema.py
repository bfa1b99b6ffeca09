"""The JSON Schema is generated from the models, committed, and every example validates with it."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import ROOT, example_specs
from parc.loader import load_file
from parc.resolve import load_and_resolve
from parc.schema import schema_text

SCHEMA_FILE = ROOT / "schemas" / "servingspec.schema.json"


def test_committed_schema_matches_models():
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "schemas/servingspec.schema.json drifted from the pydantic models; regenerate with "
        "`parc schema > schemas/servingspec.schema.json`")


def test_parc_schema_prints_the_same_bytes(run):
    code, out, _ = run("schema")
    assert code == 0
    assert out == SCHEMA_FILE.read_text()


@pytest.mark.parametrize("path", example_specs(), ids=lambda p: p.name)
def test_examples_validate_with_jsonschema_and_pydantic(path):
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(load_file(path).data)
    load_and_resolve(path)


def test_examples_declare_the_schema_for_editors():
    for path in example_specs():
        assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/servingspec.schema.json\n")


def test_jsonschema_rejects_unknown_fields():
    schema = json.loads(SCHEMA_FILE.read_text())
    data = load_file(example_specs()[0]).data
    data["model"]["precison"] = "bf16"
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        jsonschema.Draft202012Validator(schema).validate(data)


def test_readme_spec_reference_matches_models():
    from parc.docs import spec_reference

    readme = (ROOT / "README.md").read_text()
    assert spec_reference() in readme, "README spec reference is stale: run `python -m parc.docs --write`"
