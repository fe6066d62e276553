"""The topics this app owns and their explicit creation.

Topics are created by the code that needs them (platform start-up, the consumer, the producer's
spool drainer after an outage) rather than by broker auto-creation, because auto-creation picks
the broker's default partition count (1 on tansu) and partitions bound consumer parallelism.
The local broker keeps topics in memory only, so "create if missing" runs on every start.
"""

from __future__ import annotations

import contextlib
import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from learners import conf

log = logging.getLogger(__name__)


def events_topic() -> str:
    return conf.events_topic()


def dlq_topic() -> str:
    return conf.dlq_topic()


def wanted_partitions() -> dict[str, int]:
    """``{topic: partition count}`` from settings (EVENT_TOPIC_PARTITIONS, ...)."""
    return conf.topic_partitions()


def admin_client(bootstrap: str | None = None, timeout_ms: int = 5000) -> KafkaAdminClient:
    """An admin client that gives up after ``timeout_ms`` when no broker answers."""
    return KafkaAdminClient(
        bootstrap_servers=(bootstrap or conf.bootstrap_servers()).split(","),
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def ensure_topics(bootstrap: str | None = None, *, timeout_ms: int = 5000) -> list[str]:
    """Create the app's missing topics with their configured partition counts.

    Returns the names it created. Raises a ``KafkaError`` when the broker is unreachable.
    A topic that exists with fewer partitions than configured is only logged: tansu does not
    implement CreatePartitions, and on Kafka adding partitions re-maps keys, which is an
    operator's decision.
    """
    wanted = wanted_partitions()
    admin = admin_client(bootstrap, timeout_ms)
    try:
        existing = _partition_counts(admin, list(wanted))
        missing = [name for name in wanted if name not in existing]
        for name in missing:
            _create(admin, name, wanted[name])
        for name, count in existing.items():
            if count < wanted[name]:
                log.warning("topic %s has %d partitions, %d configured", name, count, wanted[name])
        return missing
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    present = set(admin.list_topics())
    wanted = [name for name in names if name in present]
    if not wanted:
        return {}
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(wanted)}


def _create(admin: KafkaAdminClient, name: str, partitions: int) -> None:
    topic = NewTopic(name, partitions, conf.replication_factor())
    with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent start-up won the race
        admin.create_topics([topic])
        log.info("created topic %s with %d partitions", name, partitions)


def partition_count(topic: str, bootstrap: str | None = None) -> int:
    """Partitions of ``topic`` as the broker reports them (0 when it does not exist)."""
    admin = admin_client(bootstrap)
    try:
        return _partition_counts(admin, [topic]).get(topic, 0)
    finally:
        admin.close()
