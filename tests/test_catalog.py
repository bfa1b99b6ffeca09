"""The model and GPU catalogs: sources, parameter counts, lookups, HF config.json reading."""

from __future__ import annotations

import json

import pytest

from parc import catalog
from parc.catalog import hfconfig, shapes

MODELS = catalog.models()
GPUS = catalog.gpus()


@pytest.mark.parametrize("key", MODELS.keys())
def test_parameter_count_matches_published(key):
    arch = MODELS.entries[key]
    total = shapes.total_params(arch) / 1e9
    active = shapes.active_params(arch) / 1e9
    if "excludes the input embedding" in arch.note:  # gpt-oss publishes active params without it
        active -= shapes.breakdown(arch).embedding / 1e9
    assert abs(total - arch.published_params_b) / arch.published_params_b < 0.03, (total, arch.published_params_b)
    assert abs(active - arch.published_active_params_b) / arch.published_active_params_b < 0.03


@pytest.mark.parametrize("key", MODELS.keys())
def test_model_entries_carry_sources(key):
    arch = MODELS.entries[key]
    assert arch.config_source.startswith("https://")
    assert arch.params_source
    assert arch.num_attention_heads % max(arch.num_key_value_heads, 1) == 0 or arch.is_mla


def test_catalog_coverage():
    assert len(MODELS.entries) >= 25
    for key in ["llama-2-70b", "llama-3.1-405b", "llama-3.2-1b", "llama-3.3-70b", "mistral-7b", "mixtral-8x7b",
                "mixtral-8x22b", "qwen2.5-72b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3",
                "deepseek-r1", "gpt-oss-20b", "gpt-oss-120b", "gemma-2-9b", "phi-4"]:
        assert key in MODELS.entries
    assert len(GPUS.entries) >= 20
    for key in ["H100-SXM-80GB", "H100-PCIE-80GB", "H100-NVL-94GB", "H200-SXM-141GB", "H20-96GB", "B200-SXM-180GB",
                "B300-SXM-288GB", "GB200-NVL-186GB", "A100-SXM-40GB", "A100-SXM-80GB", "A100-PCIE-40GB",
                "A100-PCIE-80GB", "A40-48GB", "A10G-24GB", "L4-24GB", "L40-48GB", "L40S-48GB", "RTX6000ADA-48GB",
                "MI250X-OAM-128GB", "MI300X-OAM-192GB", "MI325X-OAM-256GB"]:
        assert key in GPUS.entries


@pytest.mark.parametrize("key", GPUS.keys())
def test_gpu_entries_carry_sources_and_sane_numbers(key):
    g = GPUS.entries[key]
    assert g.sources and all(s.url.startswith("https://") for s in g.sources)
    assert 16 <= g.memory_gb <= 300
    assert 200 <= g.hbm_bandwidth_gbs <= 10000
    assert g.tflops_fp16 > 0
    assert g.intra_node_default in ("nvlink", "pcie")
    if g.intra_node_default == "nvlink":
        assert g.nvlink_gbs > 0 and g.nvlink_domain >= 2


@pytest.mark.parametrize("name, key", [("h100", "H100-SXM-80GB"), ("H100-sxm-80gb", "H100-SXM-80GB"),
                                       ("a100", "A100-SXM-80GB"), ("mi300x", "MI300X-OAM-192GB"),
                                       ("l40s", "L40S-48GB")])
def test_gpu_aliases(name, key):
    assert GPUS.get(name).key == key


@pytest.mark.parametrize("model_id, key", [
    ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"),
    ("meta-llama/llama-3.1-70b-instruct", "llama-3.1-70b"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
    ("Qwen/Qwen3-30B-A3B", "qwen3-30b-a3b"),
    ("deepseek-ai/DeepSeek-R1", "deepseek-r1"),
    ("openai/gpt-oss-120b", "gpt-oss-120b"),
    ("someone/Llama-3.1-70B-Instruct-AWQ", "llama-3.1-70b"),
])
def test_model_ids_resolve(model_id, key):
    assert catalog.model_for_id(model_id).key == key


def test_unknown_model_id():
    assert catalog.model_for_id("acme/secret-model") is None


def _hf(arch: catalog.ModelArch) -> dict:
    """The arch written back as a Hugging Face config.json of its model_type."""
    return hfconfig.to_dict(arch)


@pytest.mark.parametrize("key", ["llama-3.1-8b", "mistral-7b", "mixtral-8x7b", "qwen2.5-7b", "qwen3-8b",
                                 "qwen3-30b-a3b", "deepseek-v3", "gpt-oss-20b"])
def test_hf_config_reads_into_the_same_shapes(key, tmp_path):
    arch = MODELS.entries[key]
    p = tmp_path / "config.json"
    p.write_text(json.dumps(_hf(arch)))
    got = hfconfig.read_config(p)
    assert shapes.total_params(got) == shapes.total_params(arch)
    assert shapes.kv_bytes_per_sequence(got, "auto", 1, 1, 4096) == shapes.kv_bytes_per_sequence(arch, "auto", 1, 1, 4096)
    assert (got.num_experts, got.experts_per_token, got.is_mla) == (arch.num_experts, arch.experts_per_token, arch.is_mla)


@pytest.mark.parametrize("text, message", [
    ('{"model_type": "bert"}', "model_type 'bert' is not one parc reads"),
    ('{"model_type": "llama"}', "config.json has no 'num_hidden_layers'"),
    ('{"model_type": "llama", "num_hidden_layers": "32"}', "field 'num_hidden_layers' must be an integer from 1 to 1024"),
    ("[1, 2]", "a config.json is a JSON object"),
    ("{nope", "not valid JSON"),
])
def test_hf_config_errors(text, message, tmp_path):
    p = tmp_path / "config.json"
    p.write_text(text)
    with pytest.raises(hfconfig.ConfigError, match=message):
        hfconfig.read_config(p)


def test_catalog_cli(run):
    code, out, _ = run("catalog", "gpus")
    assert code == 0 and "H100-SXM-80GB" in out and "MI300X-OAM-192GB" in out
    code, out, _ = run("catalog", "models", "--format", "json")
    data = json.loads(out)
    assert data["llama-3.1-70b"]["num_hidden_layers"] == 80
    assert data["llama-3.1-70b"]["computedParams"] == shapes.total_params(MODELS.entries["llama-3.1-70b"])
