"""The hot-path JSON codec reads and writes exactly what the standard library does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts import jsoncodec

DOCUMENTS = [
    b'{"displayName": "GPT", "contextLength": 128000, "inputCost": 2.5, "tags": ["a", "b"]}',
    b'{"nested": {"deeper": [1, 2.0, -3e-7, null, true, false, ""]}}',
    b'{"text": "caf\\u00e9 \\ud83d\\ude00 \\"quoted\\""}',
    b'{"big": 123456789012345678901234567890}',
    b'{"negative": -9223372036854775809, "unsigned": 18446744073709551616}',
    b'{"huge": 1e400}',
    b'{"digits in text": "1234567890123456789012345"}',
    b"[]",
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_reading_gives_what_the_standard_library_gives(document: bytes) -> None:
    expected = json.loads(document)
    got = jsoncodec.loads(document)
    assert got == expected
    assert json.dumps(got) == json.dumps(expected)  # same types too: no int read as a float


@pytest.mark.parametrize("document", DOCUMENTS)
def test_text_and_memoryview_are_read_like_bytes(document: bytes) -> None:
    assert jsoncodec.loads(document.decode()) == json.loads(document)
    assert jsoncodec.loads(memoryview(document)) == json.loads(document)


@pytest.mark.parametrize("document", [b"", b"{", b'{"a": 1,}', b'{"a": 1} x'])
def test_invalid_json_is_refused_like_the_standard_library_does(document: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(document)
    with pytest.raises(ValueError):
        jsoncodec.loads(document)


def test_integers_beyond_64_bits_are_written_exactly() -> None:
    value = {"big": 2**70, "small": -(2**70)}
    assert json.loads(jsoncodec.dumps(value)) == value


def test_datetimes_are_written_as_rfc3339_on_both_paths() -> None:
    moment = datetime(2025, 3, 1, 12, 30, 5, 120000, tzinfo=timezone(timedelta(hours=2)))
    fast = jsoncodec.dumps({"at": moment})
    slow = jsoncodec.dumps({"at": moment, "big": 2**70})  # forces the standard library
    for written in (fast, slow):
        assert datetime.fromisoformat(json.loads(written)["at"]) == moment
    assert json.loads(jsoncodec.dumps({"at": datetime(2025, 1, 1, tzinfo=UTC)}))["at"].startswith(
        "2025-01-01T00:00:00"
    )
