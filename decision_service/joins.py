"""The joins still open, in memory: each pending ride's champion predictions, so a ride's last
prediction decides it without reading the others back from the store.

The store stays the authority, and memory holds nothing the store does not:

- when this replica takes partitions over, their pending rides are read from the store (what an
  earlier owner or incarnation stored is then known), and every later prediction of those
  partitions comes through this replica;
- a batch's predictions are merged into a copy (:meth:`PendingJoins.join`), and memory changes
  only once the store transaction that wrote them has committed (:meth:`PendingJoins.committed`);
- a decision made from memory is stored only if the ride is still pending in the store
  (``DecisionStore.record_decisions``), and the service checks that it was;
- entries older than the join window are checked against the store now and then
  (:meth:`PendingJoins.tidy`): a ride decided elsewhere (a batch redelivered after its store
  transaction committed) is let go; one still pending stays until the expiry sweep decides it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from ridestream.contracts.events import TARGETS
from ridestream.ml.registry import MODEL_NAMES
from ridestream.store.decisions import DecisionStore
from ridestream.store.records import StoredPrediction

# The model whose champion decides each target (the gateway's simple model never does).
_DECIDING: dict[str, str] = {MODEL_NAMES[target]: target for target in TARGETS}

Joined = dict[str, dict[str, StoredPrediction]]  # ride_id → target → the prediction it uses


def _earlier(candidate: StoredPrediction, held: StoredPrediction | None) -> bool:
    """Whether ``candidate`` wins over ``held``: the store's rule (``champion_predictions``),
    the earliest prediction first, then the lowest version, so arrival order never matters."""
    return held is None or (candidate.predicted_at_ms, candidate.model_version) < (
        held.predicted_at_ms,
        held.model_version,
    )


class PendingJoins:
    """This replica's open joins: ride → target → champion prediction, with each ride's
    partition and when memory first held it."""

    def __init__(self, store: DecisionStore, max_age_ms: int) -> None:
        self.store = store
        self.max_age_ms = max_age_ms
        self._rides: Joined = {}
        self._partition: dict[str, int] = {}
        self._since: dict[str, int] = {}
        self._held: set[int] = set()
        self._batch_partitions: dict[str, int] = {}
        self._tidied_ms = 0

    def __len__(self) -> int:
        return len(self._rides)

    def hold(self, conn: Connection, partitions: Collection[int], at_ms: int) -> None:
        """Follow the assignment: forget the partitions given away, read the pending rides of
        those taken over from the store."""
        lost, gained = self._held - set(partitions), set(partitions) - self._held
        for ride_id in [r for r, p in self._partition.items() if p in lost]:
            self._drop(ride_id)
        for partition in gained:
            for ride_id, by_target in self.store.pending_champions(conn, [partition]).items():
                self._rides[ride_id] = by_target
                self._since[ride_id] = at_ms
                self._partition[ride_id] = partition
        self._held = set(partitions)

    def join(self, rows: Sequence[Mapping[str, Any]], partitions: Sequence[int]) -> Joined:
        """The rides this batch's deciding champion predictions touch, each with everything known
        of it: memory's entry merged with the batch (memory itself is not changed)."""
        joined: Joined = {}
        self._batch_partitions = {}
        for row, partition in zip(rows, partitions, strict=True):
            target = _DECIDING.get(row["model_name"])
            if target is None or target != row["target"] or row["role"] != "champion":
                continue
            ride_id = row["ride_id"]
            by_target = joined.get(ride_id)
            if by_target is None:
                by_target = joined[ride_id] = dict(self._rides.get(ride_id, ()))
                self._batch_partitions[ride_id] = partition
            prediction = StoredPrediction(
                ride_id,
                target,
                row["model_name"],
                row["model_version"],
                "champion",
                row["value"],
                row["source_event_time_ms"],
                row["pickup_time_ms"],
                row["predicted_at_ms"],
            )
            if _earlier(prediction, by_target.get(target)):
                by_target[target] = prediction
        return joined

    def committed(self, joined: Joined, decided: Iterable[str], at_ms: int) -> None:
        """The store transaction that wrote ``joined``'s predictions and the ``decided`` rides'
        decisions has committed: memory follows it (for the partitions still held)."""
        for ride_id, by_target in joined.items():
            if self._batch_partitions[ride_id] not in self._held:
                continue
            self._rides[ride_id] = by_target
            self._since.setdefault(ride_id, at_ms)
            self._partition[ride_id] = self._batch_partitions[ride_id]
        for ride_id in decided:
            self._drop(ride_id)

    def tidy(self, conn: Connection, at_ms: int) -> None:
        """At most once per ``max_age_ms``: let go of the entries older than that whose ride the
        store no longer has pending."""
        if at_ms - self._tidied_ms < self.max_age_ms:
            return
        self._tidied_ms = at_ms
        oldest = at_ms - self.max_age_ms
        old = [ride_id for ride_id, since in self._since.items() if since < oldest]
        if old:
            pending = self.store.still_pending(conn, old)
            for ride_id in old:
                if ride_id in pending:
                    self._since[ride_id] = at_ms
                else:
                    self._drop(ride_id)

    def _drop(self, ride_id: str) -> None:
        self._rides.pop(ride_id, None)
        self._since.pop(ride_id, None)
        self._partition.pop(ride_id, None)
