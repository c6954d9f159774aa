"""Catalog formats map to the registry's meta exactly, and skip (not fail on) bad entries."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import pytest

from contracts.meta import PROVIDER_OWNED_KEYS, normalize_meta
from worker.catalog.formats import (
    CatalogError,
    CatalogFormat,
    detect_format,
    load_catalog,
    parse_catalog,
    parse_litellm,
    parse_modelsdev_json,
    parse_native,
    per_million,
    usd,
)

DATA = files("worker.catalog") / "data"


@pytest.fixture(scope="module")
def data_dir() -> Any:
    with as_file(DATA) as path:
        yield Path(path)


def by_id(catalog: Any) -> dict[str, Any]:
    return {m.id: m for m in catalog.models}


# --- prices -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_token", "expected"),
    [
        (2.5e-06, "2.5"),
        (1e-05, "10"),
        (1.5e-07, "0.15"),
        (7.5e-08, "0.075"),
        (1.1e-06, "1.1"),
        (4.4e-06, "4.4"),
        (2e-08, "0.02"),
        (2.1875e-06, "2.1875"),
        (0.0, "0"),
        (3, "3000000"),
    ],
)
def test_per_token_prices_become_exact_per_million(per_token: float, expected: str) -> None:
    assert per_million(per_token) == Decimal(expected)
    assert str(per_million(per_token)) == expected


def test_per_million_prices_are_kept_exactly() -> None:
    assert usd(0.15) == Decimal("0.15")
    assert usd(10) == Decimal("10")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc", True, None, [1]])
def test_prices_that_are_not_numbers_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="price"):
        per_million(bad)


# --- LiteLLM ----------------------------------------------------------------------------------


def test_litellm_openai_maps_context_prices_and_capabilities(data_dir: Path) -> None:
    catalog = load_catalog(data_dir / "litellm_sample.json", provider="openai")
    assert catalog.format is CatalogFormat.LITELLM
    models = by_id(catalog)
    assert sorted(models) == [
        "gpt-4.1",
        "gpt-4o",
        "gpt-4o-mini",
        "o3-mini",
        "text-embedding-3-small",
    ]

    gpt4o = models["gpt-4o"]
    assert (gpt4o.name, gpt4o.provider) == ("gpt-4o", "openai")
    assert gpt4o.meta["contextLength"] == 128000
    assert gpt4o.meta["maxOutputTokens"] == 16384
    assert gpt4o.meta["inputCostPerMillionTokens"] == 2.5
    assert gpt4o.meta["outputCostPerMillionTokens"] == 10
    caps = gpt4o.meta["capabilities"]
    assert caps[0] == "chat"
    assert {"vision", "function_calling", "response_schema", "prompt_caching"} <= set(caps)
    assert len(caps) == len(set(caps))
    assert all(c == c.lower() for c in caps)
    assert gpt4o.meta["providerMetadata"] == {
        "source": "litellm",
        "key": "gpt-4o",
        "mode": "chat",
        "cacheReadCostPerMillionTokens": 1.25,
    }

    mini = models["gpt-4o-mini"].meta
    assert (mini["inputCostPerMillionTokens"], mini["outputCostPerMillionTokens"]) == (0.15, 0.6)
    assert mini["providerMetadata"]["cacheReadCostPerMillionTokens"] == 0.075

    assert models["gpt-4.1"].meta["contextLength"] == 1047576
    o3 = models["o3-mini"].meta
    assert "reasoning" in o3["capabilities"]
    assert "vision" not in o3["capabilities"]  # supports_vision: false is not a capability
    assert "parallel_function_calling" not in o3["capabilities"]

    embedding = models["text-embedding-3-small"].meta
    assert embedding["capabilities"] == ["embedding"]
    assert embedding["contextLength"] == 8191
    assert "maxOutputTokens" not in embedding
    assert embedding["inputCostPerMillionTokens"] == 0.02
    assert embedding["providerMetadata"]["outputVectorSize"] == 1536


def test_litellm_skips_sample_spec_other_providers_and_unpriced_modes(data_dir: Path) -> None:
    catalog = load_catalog(data_dir / "litellm_sample.json", provider="openai")
    ids = {m.id for m in catalog.models}
    assert "sample_spec" not in ids
    assert not ids & {"claude-3-5-sonnet-20241022", "gemini-1.5-pro"}
    assert [(s.key, s.reason) for s in catalog.skipped] == [
        ("1024-x-1024/dall-e-2", "mode 'image_generation' is not synced (per-token modes only)")
    ]


def test_litellm_strips_the_provider_prefix_from_ids(data_dir: Path) -> None:
    catalog = load_catalog(data_dir / "litellm_sample.json", provider="gemini")
    models = by_id(catalog)
    assert sorted(models) == ["gemini-1.5-pro", "gemini-2.0-flash"]
    flash = models["gemini-2.0-flash"].meta
    assert flash["contextLength"] == 1048576
    assert (flash["inputCostPerMillionTokens"], flash["outputCostPerMillionTokens"]) == (0.1, 0.4)
    assert {"vision", "audio_input", "function_calling"} <= set(flash["capabilities"])
    assert flash["providerMetadata"]["key"] == "gemini/gemini-2.0-flash"
    pro = models["gemini-1.5-pro"].meta
    assert (pro["contextLength"], pro["inputCostPerMillionTokens"]) == (2097152, 1.25)


def test_litellm_anthropic(data_dir: Path) -> None:
    models = by_id(load_catalog(data_dir / "litellm_sample.json", provider="anthropic"))
    sonnet = models["claude-3-5-sonnet-20241022"].meta
    assert (sonnet["inputCostPerMillionTokens"], sonnet["outputCostPerMillionTokens"]) == (3, 15)
    assert sonnet["providerMetadata"]["cacheWriteCostPerMillionTokens"] == 3.75
    assert sonnet["providerMetadata"]["deprecationDate"] == "2025-10-01"
    assert models["claude-sonnet-4-20250514"].meta["maxOutputTokens"] == 64000
    assert "reasoning" in models["claude-sonnet-4-20250514"].meta["capabilities"]


def test_litellm_prefers_the_unprefixed_key_and_reports_the_duplicate() -> None:
    data = {
        "openai/gpt-4o": {"litellm_provider": "openai", "mode": "chat", "max_input_tokens": 1},
        "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "max_input_tokens": 128000},
    }
    catalog = parse_litellm(data, provider="openai")
    assert [(m.id, m.meta["contextLength"]) for m in catalog.models] == [("gpt-4o", 128000)]
    assert [(s.key, s.reason) for s in catalog.skipped] == [
        ("openai/gpt-4o", "duplicate model id 'gpt-4o'")
    ]


def test_litellm_bad_entries_are_skipped_with_a_reason() -> None:
    data = {
        "ok": {"litellm_provider": "acme", "max_input_tokens": 1000, "input_cost_per_token": 1e-6},
        "bad-tokens": {"litellm_provider": "acme", "max_input_tokens": "lots"},
        "bad-price": {"litellm_provider": "acme", "input_cost_per_token": "free"},
        "negative": {"litellm_provider": "acme", "input_cost_per_token": -1e-6},
        "output-over-context": {
            "litellm_provider": "acme",
            "max_input_tokens": 100,
            "max_output_tokens": 200,
        },
        "bad id with spaces": {"litellm_provider": "acme"},
        "x" * 101: {"litellm_provider": "acme"},
    }
    catalog = parse_litellm(data, provider="acme")
    assert [m.id for m in catalog.models] == ["ok"]
    assert catalog.models[0].meta["inputCostPerMillionTokens"] == 1
    reasons = {s.key: s.reason for s in catalog.skipped}
    assert set(reasons) == set(data) - {"ok"}
    assert "max_input_tokens must be an integer" in reasons["bad-tokens"]
    assert "input_cost_per_token must be a number" in reasons["bad-price"]
    assert "meta.inputCostPerMillionTokens" in reasons["negative"]
    assert "maxOutputTokens must not exceed contextLength" in reasons["output-over-context"]
    assert reasons["bad id with spaces"].startswith("id: String should match pattern")
    assert reasons["x" * 101].startswith("id: String should have at most 100 characters")


def test_litellm_needs_a_provider() -> None:
    with pytest.raises(CatalogError, match="--provider"):
        parse_catalog({"sample_spec": {}, "gpt-4o": {"litellm_provider": "openai"}})


# --- models.dev -------------------------------------------------------------------------------


def test_modelsdev_toml_directory(data_dir: Path) -> None:
    catalog = load_catalog(data_dir / "modelsdev" / "openai")
    assert (catalog.format, catalog.provider) == (CatalogFormat.MODELSDEV, "openai")
    models = by_id(catalog)
    assert sorted(models) == ["gpt-4o", "gpt-4o-mini", "o3-mini"]
    gpt4o = models["gpt-4o"]
    assert (gpt4o.name, gpt4o.provider) == ("gpt-4o", "openai")
    assert gpt4o.meta["displayName"] == "GPT-4o"
    assert (gpt4o.meta["contextLength"], gpt4o.meta["maxOutputTokens"]) == (128000, 16384)
    assert (gpt4o.meta["inputCostPerMillionTokens"], gpt4o.meta["outputCostPerMillionTokens"]) == (
        2.5,
        10,
    )
    assert gpt4o.meta["capabilities"] == ["chat", "function_calling", "response_schema", "vision"]
    assert gpt4o.meta["providerMetadata"]["releaseDate"] == "2024-05-13"
    assert gpt4o.meta["providerMetadata"]["cacheReadCostPerMillionTokens"] == 1.25
    assert models["o3-mini"].meta["capabilities"] == [
        "chat",
        "function_calling",
        "reasoning",
        "response_schema",
    ]


@pytest.mark.parametrize(
    "relative", ["modelsdev/anthropic/models", "modelsdev/anthropic", "modelsdev"]
)
def test_modelsdev_directory_layouts(data_dir: Path, relative: str) -> None:
    catalog = load_catalog(data_dir / relative, provider="anthropic")
    models = by_id(catalog)
    assert sorted(models) == ["claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"]
    haiku = models["claude-3-5-haiku-20241022"].meta
    assert haiku["capabilities"] == ["chat", "function_calling", "vision", "pdf_input"]
    assert (haiku["inputCostPerMillionTokens"], haiku["outputCostPerMillionTokens"]) == (0.8, 4)


def test_modelsdev_single_toml_file(data_dir: Path) -> None:
    catalog = load_catalog(data_dir / "modelsdev/anthropic/models/claude-sonnet-4-20250514.toml")
    assert [(m.id, m.provider) for m in catalog.models] == [
        ("claude-sonnet-4-20250514", "anthropic")
    ]


def test_modelsdev_nested_ids_and_bad_files(tmp_path: Path) -> None:
    models = tmp_path / "providers" / "modelscope" / "models"
    (models / "Qwen").mkdir(parents=True)
    (models / "Qwen" / "Qwen3-32B.toml").write_text(
        'name = "Qwen3 32B"\ntool_call = true\n[limit]\ncontext = 131_072\noutput = 16_384\n'
    )
    (models / "broken.toml").write_text("name = \n")
    (models / "negative.toml").write_text('name = "N"\n[cost]\ninput = -1\n')
    catalog = load_catalog(tmp_path / "providers", provider="modelscope")
    assert [m.id for m in catalog.models] == ["Qwen/Qwen3-32B"]
    assert catalog.models[0].meta["capabilities"] == ["chat", "function_calling"]
    reasons = {
        Path(s.key).name if s.key.endswith(".toml") else s.key: s.reason for s in catalog.skipped
    }
    assert reasons["broken.toml"].startswith("not valid TOML")
    assert "inputCostPerMillionTokens" in reasons["negative"]


def test_modelsdev_api_json() -> None:
    api = {
        "openai": {
            "id": "openai",
            "name": "OpenAI",
            "models": {
                "gpt-4o": {
                    "id": "gpt-4o",
                    "name": "GPT-4o",
                    "tool_call": True,
                    "reasoning": False,
                    "modalities": {"input": ["text", "image", "audio"], "output": ["text"]},
                    "cost": {"input": 2.5, "output": 10},
                    "limit": {"context": 128000, "output": 16384},
                }
            },
        },
        "anthropic": {"id": "anthropic", "models": {}},
    }
    assert detect_format(api) is CatalogFormat.MODELSDEV
    catalog = parse_catalog(api, provider="openai")
    meta = catalog.models[0].meta
    assert meta["capabilities"] == ["chat", "function_calling", "vision", "audio_input"]
    assert meta["inputCostPerMillionTokens"] == 2.5
    # One provider's object on its own works too, the provider taken from its id.
    single = parse_modelsdev_json(api["openai"])
    assert (single.provider, [m.id for m in single.models]) == ("openai", ["gpt-4o"])
    with pytest.raises(CatalogError, match="pass a provider"):
        parse_catalog(api)


# --- native -----------------------------------------------------------------------------------


def test_demo_catalog_is_valid_and_spans_providers(data_dir: Path) -> None:
    catalog = load_catalog(data_dir / "demo_catalog.json")
    assert catalog.format is CatalogFormat.NATIVE
    assert catalog.skipped == ()
    assert catalog.providers == ["anthropic", "google", "mistral", "openai"]
    openai = {m.id: m for m in catalog.for_provider("openai")}
    assert set(openai) == {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini"}
    assert openai["gpt-4o"].meta["inputCostPerMillionTokens"] == 2.5
    for model in catalog.models:
        assert set(model.meta) <= PROVIDER_OWNED_KEYS
        assert normalize_meta(model.meta) == model.meta
    only = load_catalog(data_dir / "demo_catalog.json", provider="anthropic")
    assert only.providers == ["anthropic"] and len(only.models) == 3


def test_native_skips_foreign_keys_and_bad_entries() -> None:
    data = {
        "provider": "acme",
        "models": [
            {"id": "a-1", "name": "A 1", "meta": {"contextLength": 8192}},
            {"id": "a-2", "meta": {"requiredTier": "pro"}},
            {"id": "a-3", "meta": {"contextLength": 0}},
            {"id": "a-4", "colour": "red"},
            "nope",
            {"id": "a-1", "name": "again"},
        ],
    }
    catalog = parse_native(data)
    assert [(m.id, m.name, m.meta) for m in catalog.models] == [
        ("a-1", "A 1", {"contextLength": 8192})
    ]
    reasons = [s.reason for s in catalog.skipped]
    assert "provider-owned keys; not allowed: requiredTier" in reasons[0]
    assert reasons[1] == "meta.contextLength: Input should be greater than 0"
    assert catalog.skipped[1].key == "models[2] (a-3)"
    assert reasons[2] == "unknown keys: colour"
    assert reasons[3] == "entry must be an object"
    assert reasons[4] == "duplicate model id 'a-1'"


def test_native_entry_without_name_uses_the_id() -> None:
    catalog = parse_native({"provider": "acme", "models": [{"id": "m"}]})
    assert (catalog.models[0].name, catalog.models[0].meta) == ("m", {})


# --- detection --------------------------------------------------------------------------------


def test_format_is_detected_and_can_be_overridden(tmp_path: Path) -> None:
    native = tmp_path / "catalog.json"
    native.write_text(json.dumps({"provider": "acme", "models": []}))
    assert load_catalog(native).format is CatalogFormat.NATIVE
    forced = load_catalog(native, fmt="litellm", provider="acme")  # explicit format wins
    assert (forced.format, forced.models) == (CatalogFormat.LITELLM, ())
    assert detect_format({"gpt-4o": {"litellm_provider": "openai"}}) is CatalogFormat.LITELLM
    with pytest.raises(CatalogError, match="cannot tell"):
        detect_format({"what": 1})


def test_unreadable_files_are_catalog_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(bad)
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not a valid CatalogFormat"):
        load_catalog(bad, fmt="csv")
