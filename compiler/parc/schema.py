"""The JSON Schema of the spec, generated from the pydantic models (the models are the schema)."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_ID = "https://parc.dev/schemas/servingspec.schema.json"


def schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a ServingSpec document."""
    from parc.spec import ServingSpec

    doc = ServingSpec.model_json_schema(by_alias=True, mode="validation")
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["$id"] = SCHEMA_ID
    doc["title"] = "parc ServingSpec (parc.dev/v1alpha1)"
    return doc


def schema_text() -> str:
    """The schema as the exact text committed in ``schemas/servingspec.schema.json``."""
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
