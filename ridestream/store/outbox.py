"""The outbox of decisions: stored unpublished, claimed under a token with the decisions topic's
end offsets before the Kafka transaction that publishes them, marked published after the commit.
A crash in between leaves an in-flight claim that the next start resolves by reading the
decisions topic from those offsets (see decision_service/service.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, select, update

from ridestream.contracts.events import Decision
from ridestream.store.records import decision_from_row
from ridestream.store.tables import DECIDED, chunks, outbox, rides


class Outbox:
    """The outbox half of :class:`ridestream.store.decisions.DecisionStore`."""

    engine: Engine

    def claim_unpublished(
        self,
        conn: Connection,
        instance: str,
        token: str,
        partitions: Iterable[int],
        start_offsets: dict[int, int],
        known: dict[str, Decision] | None = None,
    ) -> list[Decision]:
        """Claim this instance's unpublished decisions (of its partitions) for one publication.

        ``known`` holds decisions the caller has just made and stored: they are not read back.
        """
        partitions = list(partitions)
        claimed = conn.scalars(
            update(rides)
            .where(
                rides.c.status == DECIDED,
                rides.c.published.is_(False),
                rides.c.partition.in_(partitions),
            )
            .values(publish_token=token)
            .returning(rides.c.ride_id)
        ).all()
        if not claimed:
            return []
        known = known or {}
        unknown = sorted(set(claimed) - set(known))
        read_back = {
            row.ride_id: decision_from_row(row)
            for chunk in chunks(unknown)
            for row in conn.execute(select(rides).where(rides.c.ride_id.in_(chunk)))
        }
        conn.execute(outbox.delete().where(outbox.c.instance == instance))
        conn.execute(
            outbox.insert().values(
                instance=instance, token=token, start_offsets=json.dumps(start_offsets)
            )
        )
        return [known.get(ride_id) or read_back[ride_id] for ride_id in sorted(claimed)]

    def in_flight(self, instance: str) -> tuple[str, dict[int, int]] | None:
        """The claim this instance left when it stopped between claim and confirmation."""
        with self.engine.connect() as conn:
            row = conn.execute(select(outbox).where(outbox.c.instance == instance)).first()
        if row is None:
            return None
        return row.token, {int(p): o for p, o in json.loads(row.start_offsets).items()}

    def settle(self, instance: str, token: str, published: Iterable[str] | None = None) -> None:
        """Close a claim: its decisions are published (all, or those in ``published`` when a
        crashed claim is resolved; the rest are released to be published again)."""
        with self.engine.begin() as conn:
            claimed = rides.c.publish_token == token
            if published is None:
                conn.execute(update(rides).where(claimed).values(published=True))
            else:
                ids = list(published)
                for chunk in chunks(ids):
                    conn.execute(
                        update(rides)
                        .where(claimed, rides.c.ride_id.in_(chunk))
                        .values(published=True)
                    )
                conn.execute(
                    update(rides)
                    .where(claimed, rides.c.published.is_(False))
                    .values(publish_token=None)
                )
            conn.execute(outbox.delete().where(outbox.c.instance == instance))
