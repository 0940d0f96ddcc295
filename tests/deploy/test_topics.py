"""The topic catalog (shared/topics.py), the compose topic-creation job and the Strimzi
KafkaTopic resources name the same topics with the same partitions and retention."""

from __future__ import annotations

import pytest

from shared.topics import all_topic_specs
from tests.deploy.support import OVERLAYS, compose, compose_topic_commands, of_kind, option, render


def test_compose_creates_exactly_the_catalog() -> None:
    created = []
    for argv in compose_topic_commands():
        assert "--create" in argv and "--if-not-exists" in argv
        assert option(argv, "--bootstrap-server") == ["kafka:9092"]
        (topic,) = option(argv, "--topic")
        (partitions,) = option(argv, "--partitions")
        configs = dict(c.split("=", 1) for c in option(argv, "--config"))
        created.append((topic, int(partitions), int(configs["retention.ms"])))
    assert sorted(created) == sorted(all_topic_specs())


def test_compose_topic_job_is_a_one_off_after_kafka() -> None:
    job = compose()["services"]["kafka-topics"]
    assert job["image"] == compose()["services"]["kafka"]["image"]
    assert job["restart"] == "no"
    assert job["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert job["entrypoint"][-1] == "-ec", "the job must fail when one creation fails"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_match_the_catalog(overlay: str) -> None:
    topics = of_kind(render(overlay), "KafkaTopic")
    declared = sorted((t["spec"]["topicName"], t["spec"]["partitions"],
                       int(t["spec"]["config"]["retention.ms"])) for t in topics)
    assert declared == sorted(all_topic_specs())
    for topic in topics:
        spec = topic["spec"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == \
            {"dev": "cyberclaims-dev", "prod": "cyberclaims"}[overlay]
        assert topic["metadata"]["name"] == spec["topicName"].replace(".", "-")
        assert 1 <= spec["config"]["min.insync.replicas"] <= spec["replicas"]
        assert spec["replicas"] == {"dev": 1, "prod": 3}[overlay]
