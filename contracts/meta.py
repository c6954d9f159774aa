"""``ModelMeta``: the variable metadata of a model, stored in ``models.meta``.

Unknown keys are kept so that publishers can add metadata before the worker knows about it,
but the serialized size and nesting depth are bounded so one event cannot bloat the registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel

from contracts import jsoncodec

MAX_META_BYTES: Final = 64 * 1024
MAX_META_DEPTH: Final = 16
MAX_CAPABILITIES: Final = 64
MODEL_ID_MAX: Final = 100


class Tier(StrEnum):
    FREE = "free"
    PRO = "pro"
    PRO_MAX = "pro_max"
    ENTERPRISE = "enterprise"


class TierRestrictionMode(StrEnum):
    MINIMUM = "minimum"
    EXACT = "exact"
    WHITELIST = "whitelist"


def _no_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot store U+0000; rejecting it here turns an endless database
    # error into a clear contract violation.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


_INF = float("inf")


def _shape(value: Any, limit: int) -> tuple[int, bool, int]:
    """(nesting depth, all floats finite, keys of every object), level by level.

    Stops once deeper than ``limit``, so the key count can then be short.
    """
    depth = 0
    finite = True
    keys = 0
    level = [value]
    while level:
        depth += 1
        if depth > limit:
            break
        deeper = []
        for item in level:
            if type(item) is dict:
                keys += len(item)
                children = item.values()
            else:
                children = item
            for child in children:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
                elif kind is float and (child != child or child in (_INF, -_INF)):
                    finite = False
        level = deeper
    return depth, finite, keys


_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


#: Validation context key set by decoders that already bounded the whole raw message (small,
#: no escaped NUL): then only depth and finiteness are left to check, in one cheap pass.
RAW_MESSAGE_BOUNDED: Final = "raw_message_bounded"

#: Validation context key a decoder sets (to None) to learn how many keys the meta it decoded
#: held, nested objects included, as parsed: compared with the raw message, it rules out
#: duplicate keys without parsing the message a second time.
META_KEY_COUNT: Final = "meta_key_count"


def check_json_value(value: Any, *, what: str = "meta", raw_bounded: bool = False) -> int:
    """Bounds every JSON document the registry stores: size, depth, NUL and non-finite numbers.

    One C-speed serialization answers three of the four questions: NaN/Infinity make it fail,
    the size is its length, and a NUL shows up as an escaped ``\\u0000``. Returns how many keys
    the document's objects hold, nested ones included.
    """
    depth, finite, keys = _shape(value, MAX_META_DEPTH)
    if depth > MAX_META_DEPTH:
        raise ValueError(f"{what} is nested deeper than {MAX_META_DEPTH} levels")
    if not finite:
        raise ValueError(f"{what} contains a non-finite number (NaN or Infinity)")
    if raw_bounded:
        return keys
    try:
        text = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str
        )
    except ValueError:
        raise ValueError(f"{what} contains a non-finite number (NaN or Infinity)") from None
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise ValueError(f"{what} contains a NUL character (\\u0000)")
    size = len(text.encode())
    if size > MAX_META_BYTES:
        raise ValueError(f"{what} is {size} bytes serialized; the limit is {MAX_META_BYTES}")
    return keys


def _unique_lowercase_tokens(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("capabilities must be unique")
    return values


Text = Annotated[str, AfterValidator(_no_nul)]
Capability = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", min_length=1, max_length=64)
]
ModelId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MODEL_ID_MAX, pattern=r"^[A-Za-z0-9][\w.:/@+-]*$"),
]
UsdPerMillion = Annotated[
    Decimal,
    Field(ge=0, max_digits=20, decimal_places=10, allow_inf_nan=False),
    PlainSerializer(lambda d: float(d), return_type=float, when_used="json"),
]
PositiveInt = Annotated[StrictInt, Field(gt=0, le=2**31 - 1)]


def _text_not_number(value: Any) -> Any:
    # Lax pydantic reads a bare number as a Unix timestamp; the contract says RFC 3339 text.
    if isinstance(value, int | float):
        raise ValueError("must be an RFC 3339 date-time string, not a number")
    return value


WireDatetime = Annotated[AwareDatetime, BeforeValidator(_text_not_number)]


class CamelModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=False,
        ser_json_inf_nan="null",
    )


# Keys a provider-sync job may set. Everything else in meta is owned by the admin service.
PROVIDER_OWNED_KEYS: Final = frozenset(
    {
        "displayName",
        "description",
        "version",
        "capabilities",
        "contextLength",
        "maxOutputTokens",
        "inputCostPerMillionTokens",
        "outputCostPerMillionTokens",
        "providerMetadata",
    }
)

TIER_KEYS: Final = ("requiredTier", "tierRestrictionMode", "allowedTiers")
LEGACY_KEYS: Final = ("legacyReplacementModelId", "deprecationNotice", "sunsetDate")


class ModelMeta(CamelModel):
    """The known keys of ``models.meta``; unknown keys are kept as they are."""

    model_config = ConfigDict(extra="allow")

    display_name: Annotated[Text, StringConstraints(min_length=1, max_length=255)] | None = None
    description: Annotated[Text, StringConstraints(max_length=10_000)] | None = None
    version: Annotated[Text, StringConstraints(max_length=100)] | None = None
    capabilities: Annotated[list[Capability], Field(max_length=MAX_CAPABILITIES)] | None = None
    context_length: PositiveInt | None = None
    max_output_tokens: PositiveInt | None = None
    input_cost_per_million_tokens: UsdPerMillion | None = None
    output_cost_per_million_tokens: UsdPerMillion | None = None
    credits_per_1k_tokens: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        None, alias="creditsPer1kTokens"
    )
    required_tier: Tier | None = None
    tier_restriction_mode: TierRestrictionMode | None = None
    allowed_tiers: list[Tier] | None = None
    legacy_replacement_model_id: ModelId | None = None
    deprecation_notice: Annotated[Text, StringConstraints(max_length=2_000)] | None = None
    sunset_date: WireDatetime | None = None
    provider_metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ModelMeta:
        if self.capabilities is not None:
            _unique_lowercase_tokens(self.capabilities)
        if self.allowed_tiers is not None and len(set(self.allowed_tiers)) != len(
            self.allowed_tiers
        ):
            raise ValueError("allowedTiers must be unique")
        problem = cross_field_problem(
            {
                "contextLength": self.context_length,
                "maxOutputTokens": self.max_output_tokens,
                "tierRestrictionMode": self.tier_restriction_mode,
                "allowedTiers": self.allowed_tiers,
            }
        )
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            context = info.context
            keys = check_json_value(
                data, raw_bounded=bool(context and context.get(RAW_MESSAGE_BOUNDED))
            )
            if context is not None and META_KEY_COUNT in context:
                context[META_KEY_COUNT] = keys
        return data

    def to_json_dict(self) -> dict[str, Any]:
        """The canonical JSON object stored in ``models.meta`` (camelCase, no null keys)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cross_field_problem(meta: Mapping[str, Any]) -> str | None:
    """The rules that relate keys to each other, which a merge of two valid metas can break."""
    context, max_output = meta.get("contextLength"), meta.get("maxOutputTokens")
    if isinstance(context, int) and isinstance(max_output, int) and max_output > context:
        return "maxOutputTokens must not exceed contextLength"
    if meta.get("tierRestrictionMode") == TierRestrictionMode.WHITELIST and not meta.get(
        "allowedTiers"
    ):
        return "tierRestrictionMode 'whitelist' needs a non-empty allowedTiers"
    return None


def merge_valid_meta(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Shallow merge of two metas that are each valid: only cross-key rules and size can break.

    Much cheaper than re-validating the whole object on every provider sync.
    """
    merged = {**base, **update}
    problem = cross_field_problem(merged)
    if problem is None:
        size = len(jsoncodec.dumps(merged))
        if size > MAX_META_BYTES:
            problem = f"meta is {size} bytes serialized; the limit is {MAX_META_BYTES}"
    if problem is not None:
        raise ValueError(problem)
    return merged


#: Known keys whose value is stored as given when it arrives with this exact type: a string
#: stays a string, a tier name stays a string, a float price goes to Decimal and back to the same
#: float. Not here, so always rebuilt: ``sunsetDate`` (written back in one form of RFC 3339) and
#: every snake_case field name (renamed to its camelCase wire name).
_STORED_AS_GIVEN: Final[Mapping[str, type]] = {
    "displayName": str,
    "description": str,
    "version": str,
    "capabilities": list,
    "contextLength": int,
    "maxOutputTokens": int,
    "inputCostPerMillionTokens": float,
    "outputCostPerMillionTokens": float,
    "creditsPer1kTokens": float,
    "requiredTier": str,
    "tierRestrictionMode": str,
    "allowedTiers": list,
    "legacyReplacementModelId": str,
    "deprecationNotice": str,
    "providerMetadata": dict,
}
#: Every other name of a field (``sunsetDate``, the snake_case names): always rebuilt.
_ALWAYS_REBUILT: Final = (
    frozenset(key for name, field in ModelMeta.model_fields.items() for key in (name, field.alias))
    - _STORED_AS_GIVEN.keys()
)


def _in_stored_form(raw: Mapping[str, Any]) -> bool:
    """True when dumping the validated meta would give ``raw`` back, key for key.

    Unknown keys are kept as they are, unless null (dropped); known keys are checked by type.
    Only for meta parsed from JSON text: its unknown values are then JSON values already.
    """
    for key, value in raw.items():
        kind = _STORED_AS_GIVEN.get(key)
        if kind is None:
            if key in _ALWAYS_REBUILT or value is None:
                return False
        elif type(value) is not kind:
            return False
    return True


def normalize_meta(
    raw: dict[str, Any],
    context: dict[str, Any] | None = None,
    *,
    parsed_from_json: bool = False,
) -> dict[str, Any]:
    """Validate a meta object and return its canonical stored form; raises ValidationError.

    A meta parsed from JSON that is already in its stored form (what a provider sync normally
    sends) is returned as given once validated: rebuilding it would build the same dict again,
    on the hot path of every sync.
    """
    meta = ModelMeta.model_validate(raw, context=context)
    if parsed_from_json and _in_stored_form(raw):
        return raw
    return meta.to_json_dict()


def sunset_of(meta: dict[str, Any]) -> datetime | None:
    value = meta.get("sunsetDate")
    return datetime.fromisoformat(value) if isinstance(value, str) else None
