"""Least privilege: each service principal's ACLs, derived from the settings (no cluster needed;
tests/ridestream/kafka/test_security.py holds them against a real one)."""

from __future__ import annotations

from ridestream.kafka import acls
from ridestream.kafka.security import PRINCIPALS
from ridestream.settings import Settings, TopicSettings


def test_the_acls_give_each_service_its_role_only() -> None:
    topics = Settings(_env_file=None, topics=TopicSettings(prefix="tenant."))  # type: ignore[call-arg]
    grants = {
        (g.principal, g.resource.name, g.name, g.operation.name)
        for g in acls.service_grants(topics)
    }
    full = topics.topics.full
    assert ("predictor", "TOPIC", full("started"), "READ") in grants
    assert ("predictor", "TOPIC", full("predictions"), "WRITE") in grants
    assert not {g for g in grants if g[0] == "predictor" and g[2] == full("decisions")}
    assert not {g for g in grants if g[0] == "publisher" and g[3] == "READ"}
    # The gateway reads the decisions only (to wake waiting riders), in its replicas' groups.
    assert {g[2] for g in grants if g[0] == "gateway" and g[3] == "READ"} == {
        full("decisions"),
        "tenant.ridestream.gateway.",
    }
    assert {g[2] for g in grants if g[0] == "subscriber" and g[3] == "WRITE"} == {full("dlq")}
    assert {g[2] for g in grants if g[0] == "publisher"} == {full("started"), full("completed")}
    assert ("decisions", "TOPIC", full("decisions"), "WRITE") in grants
    assert not {
        g for g in grants if g[0] == "decisions" and g[2] == full("started") and g[3] == "WRITE"
    }
    # Groups and transactional ids are the tenant's own, by prefix.
    assert ("predictor", "GROUP", "tenant.ridestream.predictor.", "READ") in grants
    assert ("predictor", "TRANSACTIONAL_ID", "tenant.ridestream.predictor.", "WRITE") in grants
    assert {g[0] for g in grants} == set(PRINCIPALS) - {"admin"}
