"""Which of the worker's four topics a broker lacks."""

from __future__ import annotations

from worker.settings import load_settings
from worker.transport.topics import missing_topics, worker_topics


def test_nothing_is_missing_when_all_four_exist_among_others() -> None:
    settings = load_settings()

    assert missing_topics([*worker_topics(settings), "someone-elses"], settings) == []


def test_missing_topics_are_named_in_the_workers_order() -> None:
    settings = load_settings(provider_sync_topic="in.sync", dead_letter_topic="out.dlt")

    missing = missing_topics(["out.dlt", settings.admin_topic], settings)

    assert missing == ["in.sync", settings.lifecycle_topic]
