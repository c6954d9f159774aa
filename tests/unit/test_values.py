"""Value objects are frozen where it is checked (by mypy) and cheap to build at run time."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from mypy import api as mypy_api

from worker.values import value_object


@value_object
class Point:
    x: int
    y: int = 0


def test_a_value_object_is_a_slotted_dataclass_compared_by_value() -> None:
    point = Point(1, 2)

    assert dataclasses.is_dataclass(point)
    assert not hasattr(point, "__dict__")
    assert point == Point(1, 2) != Point(1, 3)
    assert dataclasses.replace(point, y=5) == Point(1, 5)
    assert point == Point(1, 2), "replace builds a new object"


def test_the_type_checker_rejects_assigning_to_a_field(tmp_path: Path) -> None:
    source = tmp_path / "mutates.py"
    source.write_text(
        textwrap.dedent(
            """
            from worker.domain.model import ModelState

            def rename(state: ModelState) -> None:
                state.name = "other"
            """
        )
    )

    out, _, status = mypy_api.run(
        [str(source), "--cache-dir", str(tmp_path / ".mypy_cache"), "--no-error-summary"]
    )

    assert status == 1
    assert 'Property "name" defined in "ModelState" is read-only' in out
