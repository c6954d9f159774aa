"""Fast JSON for the hot path (orjson), with an exact fallback to the standard library.

orjson is several times faster than :mod:`json` but handles integers only up to 64 bits, which
JSON and jsonb exceed: it refuses to write them and reads them as floats. Those rare documents go
through :mod:`json`, so no value changes for speed. ``dumps`` is only for documents already
validated (no NaN or Infinity, which orjson writes as null).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson

#: Nineteen digits in a row may be an integer orjson would read as a float. Found by mapping
#: digits to "0" and everything else to " " (a C loop and a substring search: far cheaper than
#: a regular expression, or than the parse itself).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19


def _isoformat(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes of a validated document (datetimes as RFC 3339)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, default=_isoformat
        ).encode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON to exactly what :func:`json.loads` returns, faster."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _LONG_RUN not in raw.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # json.loads raises the same way, or reads what orjson refuses (1e400)
    return json.loads(raw)


def dumps_text(value: Any) -> str:
    return dumps(value).decode()
