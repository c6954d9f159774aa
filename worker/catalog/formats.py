"""Read provider catalogs (this project's JSON, LiteLLM's price file, models.dev) into models.

Every format ends in the same ``CatalogModel``: the exact ``data`` of a ``model.synced`` event,
already validated against the wire contract, so a catalog that parses is a catalog the worker
accepts. One bad entry is reported as ``Skipped`` with its reason instead of failing the file:
a catalog of hundreds of models should not be blocked by one odd row upstream.

Model ids
    native      the ``id`` of each entry, as written.
    litellm     the key without a leading ``<litellm_provider>/`` (``gemini/gemini-2.0-flash``
                -> ``gemini-2.0-flash``), since the provider is stored in its own column; keys
                without that prefix are kept as they are (``gpt-4o``). If both spellings exist,
                the unprefixed entry wins and the other is skipped as a duplicate.
    models.dev  the model file's path below ``models/`` without ``.toml`` (``gpt-4o``,
                ``Qwen/Qwen3-32B``), or the key of the ``models`` object in ``api.json``.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from contracts.events import ModelSyncedData

LITELLM_SAMPLE_KEY: Final = "sample_spec"
#: LiteLLM modes synced by default: the ones priced per token. Image, audio and rerank entries
#: are priced per image/second/query and are skipped with a reason unless asked for.
LITELLM_DEFAULT_MODES: Final = frozenset({"chat", "completion", "responses", "embedding"})

_MILLION: Final = Decimal(1_000_000)


class CatalogFormat(StrEnum):
    NATIVE = "native"
    LITELLM = "litellm"
    MODELSDEV = "modelsdev"


class CatalogError(ValueError):
    """The file as a whole cannot be read (not JSON, unknown format, no provider)."""


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One model of a provider catalog; ``meta`` holds provider-owned keys only, normalized."""

    id: str
    name: str
    provider: str
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Skipped:
    """An entry left out of the catalog, and why (shown to the operator)."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Catalog:
    format: CatalogFormat
    models: tuple[CatalogModel, ...]
    skipped: tuple[Skipped, ...] = ()
    #: The provider the file is about, when it says (native, models.dev) or was asked for.
    provider: str | None = None

    @property
    def providers(self) -> list[str]:
        return sorted({m.provider for m in self.models})

    def for_provider(self, provider: str) -> list[CatalogModel]:
        return [m for m in self.models if m.provider == provider]


@dataclass
class _Builder:
    """Collects valid models and skip reasons; enforces unique ids within one file."""

    format: CatalogFormat
    provider: str | None
    models: dict[tuple[str, str], CatalogModel] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, key: str, reason: str) -> None:
        self.skipped.append(Skipped(key, reason))

    def add(self, key: str, model_id: Any, name: Any, provider: str, meta: dict[str, Any]) -> None:
        try:
            data = ModelSyncedData.model_validate(
                {"id": model_id, "name": name, "provider": provider, "meta": meta}
            )
        except ValidationError as error:
            self.skip(key, describe_errors(error))
            return
        if (provider, data.id) in self.models:
            self.skip(key, f"duplicate model id {data.id!r}")
            return
        self.models[(provider, data.id)] = CatalogModel(data.id, data.name, provider, data.meta)

    def build(self) -> Catalog:
        return Catalog(self.format, tuple(self.models.values()), tuple(self.skipped), self.provider)


def describe_errors(error: ValidationError) -> str:
    """``field.path: message`` pairs on one line, for skip reasons and CLI errors."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in item["loc"]) or "(root)"
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


# --- helpers ----------------------------------------------------------------------------------


def _exact(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    try:
        # repr() of a float is the shortest string that round-trips: the digits in the file.
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not exact.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return exact


def per_million(value: Any, what: str = "price") -> Decimal:
    """USD per token -> USD per million tokens, exactly: 2.5e-06 becomes 2.5, not 2.4999999."""
    return _plain(_exact(value, what) * _MILLION)


def usd(value: Any, what: str = "price") -> Decimal:
    """A price already in USD per million tokens (models.dev), as an exact Decimal."""
    return _plain(_exact(value, what))


def _plain(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (2.500000 -> 2.5, 10 -> 10)."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    return normal.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else normal


def _int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _unique(tokens: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(t.lower() for t in tokens))


def _json_ready(value: Any) -> Any:
    """providerMetadata must be plain JSON: Decimals become floats."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# --- native -----------------------------------------------------------------------------------

_NATIVE_TOP: Final = frozenset({"provider", "models", "source", "$schema", "description"})
_NATIVE_ENTRY: Final = frozenset({"id", "name", "provider", "meta"})


def parse_native(data: Any, *, provider: str | None = None) -> Catalog:
    """``{"provider": P, "models": [{"id", "name", "meta", "provider"?}]}``.

    An entry's own ``provider`` overrides the file's, so one file can hold several providers
    (the demo catalog does); ``provider`` keeps only that provider's entries.
    """
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError('native catalog must be an object with a "models" array')
    unknown = sorted(set(data) - _NATIVE_TOP)
    if unknown:
        raise CatalogError(f"native catalog has unknown top-level keys: {', '.join(unknown)}")
    default = data.get("provider")
    if default is not None and not isinstance(default, str):
        raise CatalogError('"provider" must be a string')
    builder = _Builder(CatalogFormat.NATIVE, provider or default)
    for index, entry in enumerate(data["models"]):
        key = f"models[{index}]"
        if not isinstance(entry, dict):
            builder.skip(key, "entry must be an object")
            continue
        if isinstance(entry.get("id"), str):
            key = f"{key} ({entry['id']})"
        extra = sorted(set(entry) - _NATIVE_ENTRY)
        if extra:
            builder.skip(key, f"unknown keys: {', '.join(extra)}")
            continue
        owner = entry.get("provider", default)
        if owner is None:
            builder.skip(key, 'no provider: set "provider" on the file or the entry')
            continue
        if provider is not None and owner != provider:
            continue
        meta = entry.get("meta", {})
        if not isinstance(meta, dict):
            builder.skip(key, "meta must be an object")
            continue
        builder.add(key, entry.get("id"), entry.get("name", entry.get("id")), owner, meta)
    return builder.build()


# --- LiteLLM ----------------------------------------------------------------------------------


def _litellm_id(key: str, provider: str) -> str:
    prefix = f"{provider}/"
    return key[len(prefix) :] if key.startswith(prefix) else key


def _litellm_meta(key: str, entry: Mapping[str, Any], mode: str) -> dict[str, Any]:
    context = _int(entry.get("max_input_tokens"), "max_input_tokens")
    if context is None:
        context = _int(entry.get("max_tokens"), "max_tokens")
    flags = sorted(
        k.removeprefix("supports_")
        for k, v in entry.items()
        if k.startswith("supports_") and v is True
    )
    meta: dict[str, Any] = {
        "capabilities": _unique([mode, *flags]),
        "contextLength": context,
        "maxOutputTokens": _int(entry.get("max_output_tokens"), "max_output_tokens"),
    }
    for field_name, meta_key in (
        ("input_cost_per_token", "inputCostPerMillionTokens"),
        ("output_cost_per_token", "outputCostPerMillionTokens"),
    ):
        if entry.get(field_name) is not None:
            meta[meta_key] = per_million(entry[field_name], field_name)
    extra: dict[str, Any] = {"source": "litellm", "key": key, "mode": mode}
    for field_name, extra_key in (
        ("cache_read_input_token_cost", "cacheReadCostPerMillionTokens"),
        ("cache_creation_input_token_cost", "cacheWriteCostPerMillionTokens"),
    ):
        if entry.get(field_name) is not None:
            extra[extra_key] = per_million(entry[field_name], field_name)
    if isinstance(entry.get("deprecation_date"), str):
        extra["deprecationDate"] = entry["deprecation_date"]
    if isinstance(entry.get("output_vector_size"), int):
        extra["outputVectorSize"] = entry["output_vector_size"]
    meta["providerMetadata"] = _json_ready(extra)
    return _drop_none(meta)


def parse_litellm(
    data: Any, *, provider: str, modes: Iterable[str] | None = LITELLM_DEFAULT_MODES
) -> Catalog:
    """LiteLLM's ``model_prices_and_context_window.json``, the entries of one provider.

    ``provider`` matches ``litellm_provider`` (the file mixes 100+ providers, so it is
    required); ``modes=None`` keeps every mode.
    """
    if not isinstance(data, dict):
        raise CatalogError("LiteLLM price file must be a JSON object of model name -> entry")
    wanted = None if modes is None else frozenset(modes)
    builder = _Builder(CatalogFormat.LITELLM, provider)
    mine = [
        (k, v)
        for k, v in data.items()
        if k != LITELLM_SAMPLE_KEY and isinstance(v, dict) and v.get("litellm_provider") == provider
    ]
    # Unprefixed keys first, so "gpt-4o" wins over "openai/gpt-4o" when both exist.
    mine.sort(key=lambda item: item[0].startswith(f"{provider}/"))
    for key, entry in mine:
        mode = entry.get("mode", "chat")
        if not isinstance(mode, str):
            builder.skip(key, f"mode must be a string, got {mode!r}")
            continue
        if wanted is not None and mode not in wanted:
            builder.skip(key, f"mode {mode!r} is not synced (per-token modes only)")
            continue
        try:
            meta = _litellm_meta(key, entry, mode)
        except ValueError as error:
            builder.skip(key, str(error))
            continue
        model_id = _litellm_id(key, provider)
        builder.add(key, model_id, model_id, provider, meta)
    return builder.build()


# --- models.dev -------------------------------------------------------------------------------

_MODALITY_CAPABILITIES: Final = {
    ("input", "image"): "vision",
    ("input", "audio"): "audio_input",
    ("input", "video"): "video_input",
    ("input", "pdf"): "pdf_input",
    ("output", "audio"): "audio_output",
    ("output", "image"): "image_output",
}


def _modelsdev_meta(entry: Mapping[str, Any]) -> dict[str, Any]:
    modalities = entry.get("modalities") or {}
    inputs = [str(m).lower() for m in modalities.get("input", [])]
    outputs = [str(m).lower() for m in modalities.get("output", [])]
    capabilities = ["embedding" if "embedding" in outputs else "chat"]
    if entry.get("tool_call") is True:
        capabilities.append("function_calling")
    if entry.get("reasoning") is True:
        capabilities.append("reasoning")
    if entry.get("structured_output") is True:
        capabilities.append("response_schema")
    for (side, modality), capability in _MODALITY_CAPABILITIES.items():
        if modality in (inputs if side == "input" else outputs):
            capabilities.append(capability)
    limit = entry.get("limit") or {}
    cost = entry.get("cost") or {}
    meta: dict[str, Any] = {
        "displayName": entry.get("name"),
        "capabilities": _unique(capabilities),
        "contextLength": _int(limit.get("context"), "limit.context") or None,
        "maxOutputTokens": _int(limit.get("output"), "limit.output") or None,
    }
    if cost.get("input") is not None:
        meta["inputCostPerMillionTokens"] = usd(cost["input"], "cost.input")
    if cost.get("output") is not None:
        meta["outputCostPerMillionTokens"] = usd(cost["output"], "cost.output")
    extra = _drop_none(
        {
            "source": "models.dev",
            "family": entry.get("family"),
            "releaseDate": entry.get("release_date"),
            "lastUpdated": entry.get("last_updated"),
            "knowledge": entry.get("knowledge"),
            "openWeights": entry.get("open_weights"),
            "attachment": entry.get("attachment"),
            "temperature": entry.get("temperature"),
            "modalities": {"input": inputs, "output": outputs} if modalities else None,
        }
    )
    for field_name, extra_key in (
        ("cache_read", "cacheReadCostPerMillionTokens"),
        ("cache_write", "cacheWriteCostPerMillionTokens"),
    ):
        if cost.get(field_name) is not None:
            extra[extra_key] = usd(cost[field_name], f"cost.{field_name}")
    meta["providerMetadata"] = _json_ready(_stringify_dates(extra))
    return _drop_none(meta)


def _stringify_dates(values: dict[str, Any]) -> dict[str, Any]:
    """TOML dates parse to ``date`` objects; the wire wants strings."""
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in values.items()}


def _add_modelsdev(builder: _Builder, key: str, model_id: str, entry: Any, provider: str) -> None:
    if not isinstance(entry, dict):
        builder.skip(key, "entry must be an object")
        return
    try:
        meta = _modelsdev_meta(entry)
    except (ValueError, TypeError, AttributeError) as error:
        builder.skip(key, str(error))
        return
    # name is the API model name, as in the other formats; the marketing name is displayName.
    builder.add(key, model_id, model_id, provider, meta)


def parse_modelsdev_json(data: Any, *, provider: str | None = None) -> Catalog:
    """models.dev ``api.json`` (all providers; ``provider`` picks one) or one provider's object."""
    if not isinstance(data, dict):
        raise CatalogError("models.dev JSON must be an object")
    if isinstance(data.get("models"), dict):
        block, name = data, provider or data.get("id")
    else:
        if provider is None:
            raise CatalogError("models.dev api.json holds every provider: pass a provider")
        if not isinstance(data.get(provider), dict):
            raise CatalogError(f"provider {provider!r} is not in this models.dev file")
        block, name = data[provider], provider
    if not isinstance(name, str):
        raise CatalogError("cannot tell the provider of this models.dev file: pass a provider")
    builder = _Builder(CatalogFormat.MODELSDEV, name)
    for model_id, entry in block["models"].items():
        _add_modelsdev(builder, model_id, model_id, entry, name)
    return builder.build()


def _models_dir(path: Path, provider: str | None) -> tuple[Path, str | None]:
    """Accept ``providers/``, ``providers/<p>``, ``providers/<p>/models`` or a ``.toml`` file."""
    if path.is_file():
        return path, provider or (path.parent.parent.name if path.parent.name == "models" else None)
    if provider is not None and (path / provider / "models").is_dir():
        return path / provider / "models", provider
    if (path / "models").is_dir():
        return path / "models", provider or path.name
    if path.name == "models":
        return path, provider or path.parent.name
    return path, provider


def parse_modelsdev_dir(path: Path, *, provider: str | None = None) -> Catalog:
    """models.dev ``providers/<provider>/models/**/*.toml``, one model per file."""
    root, name = _models_dir(path, provider)
    if name is None:
        raise CatalogError(f"cannot tell the provider of {path}: pass a provider")
    files = [root] if root.is_file() else sorted(root.rglob("*.toml"))
    if not files:
        raise CatalogError(f"no models.dev .toml files under {root}")
    builder = _Builder(CatalogFormat.MODELSDEV, name)
    for file in files:
        model_id = (
            file.stem if root.is_file() else file.relative_to(root).with_suffix("").as_posix()
        )
        try:
            entry = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            builder.skip(str(file), f"not valid TOML: {error}")
            continue
        _add_modelsdev(builder, model_id, model_id, entry, name)
    return builder.build()


# --- detection and entry point ----------------------------------------------------------------


def detect_format(data: Any) -> CatalogFormat:
    """Tell the format of parsed JSON by its shape."""
    if not isinstance(data, dict):
        raise CatalogError("a catalog must be a JSON object")
    if isinstance(data.get("models"), list):
        return CatalogFormat.NATIVE
    if isinstance(data.get("models"), dict):
        return CatalogFormat.MODELSDEV
    values = [v for k, v in data.items() if k != LITELLM_SAMPLE_KEY]
    if LITELLM_SAMPLE_KEY in data or any(
        isinstance(v, dict) and "litellm_provider" in v for v in values[:50]
    ):
        return CatalogFormat.LITELLM
    if values and all(isinstance(v, dict) and isinstance(v.get("models"), dict) for v in values):
        return CatalogFormat.MODELSDEV
    raise CatalogError("cannot tell the catalog format; pass it explicitly (--format)")


def parse_catalog(
    data: Any, *, provider: str | None = None, fmt: CatalogFormat | str | None = None
) -> Catalog:
    """Parse already-decoded JSON in the given format, or the detected one."""
    kind = CatalogFormat(fmt) if fmt is not None else detect_format(data)
    if kind is CatalogFormat.NATIVE:
        return parse_native(data, provider=provider)
    if kind is CatalogFormat.LITELLM:
        if provider is None:
            raise CatalogError("LiteLLM's file mixes providers: pass one (--provider)")
        return parse_litellm(data, provider=provider)
    return parse_modelsdev_json(data, provider=provider)


def load_catalog(
    path: str | Path, *, provider: str | None = None, fmt: CatalogFormat | str | None = None
) -> Catalog:
    """Read a catalog file (JSON) or a models.dev directory/TOML file; the CLI's entry point."""
    path = Path(path)
    kind = CatalogFormat(fmt) if fmt is not None else None
    if path.is_dir() or path.suffix == ".toml":
        if kind not in (None, CatalogFormat.MODELSDEV):
            raise CatalogError(f"{path} is a models.dev directory or TOML file, not {kind}")
        if not path.exists():
            raise CatalogError(f"{path} does not exist")
        return parse_modelsdev_dir(path, provider=provider)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise CatalogError(f"{path} is not UTF-8: {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CatalogError(f"{path} is not valid JSON: {error}") from None
    return parse_catalog(data, provider=provider, fmt=kind)
