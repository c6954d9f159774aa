"""The worker runs Python's cyclic collector less often than Python's default."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from worker.settings import Settings
from worker.transport.app import tune_collector


@pytest.fixture(autouse=True)
def _restore_threshold() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_youngest_generation_is_collected_every_so_many_allocations() -> None:
    gc.set_threshold(700, 10, 10)

    tune_collector(Settings().gc_young_threshold)

    assert gc.get_threshold() == (50_000, 10, 10)


def test_zero_leaves_pythons_setting() -> None:
    gc.set_threshold(700, 10, 10)

    tune_collector(0)

    assert gc.get_threshold() == (700, 10, 10)
