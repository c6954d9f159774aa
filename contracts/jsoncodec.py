"""Fast JSON serialization for the hot path (orjson), exact fallback to the standard library.

orjson is several times faster than :mod:`json` but refuses integers beyond 64 bits, which JSON
and jsonb allow: those rare documents are serialized by :mod:`json`, so no value changes for
speed. Only for documents already validated (no NaN or Infinity, which orjson writes as null).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes of a validated document."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_text(value: Any) -> str:
    return dumps(value).decode()
