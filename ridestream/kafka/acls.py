"""Least privilege per service: the ACLs each principal needs, and nothing more.

Derived from the settings (topic names and the group prefix follow ``topics.prefix``), so a
shared cluster's tenant gets the grants of its own topics. ``ridestream kafka acls`` prints them;
``--apply`` creates them (as a principal allowed to alter ACLs); ``kafka start --secure`` applies
them to the local cluster. A read implies describe, a write describe too (Kafka's own rule), so
neither is listed twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from ridestream.kafka.exceptions import KafkaOperationError
from ridestream.settings import Settings

TOPIC, GROUP, TRANSACTIONAL_ID = (
    ResourceType.TOPIC,
    ResourceType.GROUP,
    ResourceType.TRANSACTIONAL_ID,
)
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
READ, WRITE = AclOperation.READ, AclOperation.WRITE


@dataclass(frozen=True)
class Grant:
    """One allowed operation of one principal on one resource (or resource prefix)."""

    principal: str
    resource: ResourceType
    name: str
    pattern: ResourcePatternType
    operation: AclOperation

    def binding(self) -> AclBinding:
        """The grant as Kafka's ACL, from any host."""
        return AclBinding(
            self.resource,
            self.name,
            self.pattern,
            f"User:{self.principal}",
            "*",
            self.operation,
            AclPermissionType.ALLOW,
        )

    def line(self) -> str:
        """``principal operation resource-type:pattern:name``, as ``kafka acls`` prints it."""
        return (
            f"{self.principal:<10} {self.operation.name:<16} "
            f"{self.resource.name.lower()}:{self.pattern.name.lower()}:{self.name}"
        )


def _grants(
    principal: str,
    resource: ResourceType,
    pattern: ResourcePatternType,
    names: Iterable[str],
    *operations: AclOperation,
) -> list[Grant]:
    return [
        Grant(principal, resource, name, pattern, operation)
        for name in names
        for operation in operations
    ]


def service_grants(settings: Settings) -> list[Grant]:
    """Every principal's ACLs for the topics of ``settings``."""
    topic = settings.topics.full
    group = settings.topics.prefix + "ridestream."
    operator_topics = list(settings.topics.names().values())
    return [
        # The backend's publisher: ride events in, nothing out.
        *_grants("publisher", TOPIC, LITERAL, [topic("started"), topic("completed")], WRITE),
        # The gateway: opted-in rides and its own prediction record; it follows the decisions
        # (a group per replica) to wake waiting riders, dead-lettering what it cannot read.
        *_grants(
            "gateway", TOPIC, LITERAL, [topic("started"), topic("predictions"), topic("dlq")], WRITE
        ),
        *_grants("gateway", TOPIC, LITERAL, [topic("decisions")], READ),
        *_grants("gateway", GROUP, PREFIXED, [group + "gateway."], READ),
        # The backend's decision subscribers (dispatch, pricing, notifications): decisions and
        # predictions in, in groups of their own; dead letters out.
        *_grants("subscriber", TOPIC, LITERAL, [topic("decisions"), topic("predictions")], READ),
        *_grants("subscriber", TOPIC, LITERAL, [topic("dlq")], WRITE),
        *_grants("subscriber", GROUP, PREFIXED, [group + "subscriber."], READ),
        # A predictor replica: started rides in; predictions and dead letters out, in
        # transactions of its own id (<group>.<instance>) that commit its group's offsets.
        *_grants("predictor", TOPIC, LITERAL, [topic("started")], READ),
        *_grants("predictor", TOPIC, LITERAL, [topic("predictions"), topic("dlq")], WRITE),
        *_grants("predictor", GROUP, PREFIXED, [group + "predictor."], READ),
        *_grants("predictor", TRANSACTIONAL_ID, PREFIXED, [group + "predictor."], WRITE),
        # The decision service: the three inputs, and its own decisions again when it recovers;
        # decisions and dead letters out; its group and its recovery readers' groups.
        *_grants(
            "decisions",
            TOPIC,
            LITERAL,
            [topic("started"), topic("completed"), topic("predictions"), topic("decisions")],
            READ,
        ),
        *_grants("decisions", TOPIC, LITERAL, [topic("decisions"), topic("dlq")], WRITE),
        *_grants("decisions", GROUP, PREFIXED, [group + "decisions"], READ),
        *_grants("decisions", TRANSACTIONAL_ID, PREFIXED, [group + "decisions."], WRITE),
        # Operators' tools: create and inspect the topics, tail them, replay dead letters.
        *_grants(
            "operator",
            TOPIC,
            LITERAL,
            operator_topics,
            AclOperation.CREATE,
            AclOperation.DESCRIBE_CONFIGS,
            AclOperation.ALTER_CONFIGS,
            READ,
            WRITE,
        ),
        *_grants("operator", GROUP, PREFIXED, ["ridestream-tail", "ridestream-admin"], READ),
        *_grants("operator", GROUP, LITERAL, [group + "dlq-replay"], READ),
    ]


def apply(admin: AdminClient, grants: list[Grant], timeout_s: float = 30.0) -> int:
    """Create the grants (existing ones are left as they are); returns how many were sent."""
    if not grants:
        return 0
    futures = admin.create_acls([grant.binding() for grant in grants], request_timeout=timeout_s)
    for binding, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            raise KafkaOperationError(f"creating the ACL {binding} failed", exc.args[0]) from exc
    return len(grants)
