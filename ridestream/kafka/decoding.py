"""A batch of Kafka messages of one record type → one validated frame, and the dead letters.

Every consumer reads this way: column by column through :class:`ColumnarDecoder` where it can (the
reader's own schema version, single-object framed, well formed), record by record through the
serde for the rest (older writers, Confluent framing, the malformed, which become dead letters
with the serde's reason); then the rows that break the contract (:func:`find_problems`) become
dead letters too. Rows keep the order of their messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Message

from ridestream.contracts.events import Event
from ridestream.contracts.validation import find_problems
from ridestream.kafka import dlq
from ridestream.serde.codecs import Serde, SingleObjectSerde
from ridestream.serde.columnar_decode import ColumnarDecoder
from ridestream.serde.exceptions import DecodeError

INVALID_VALUE = "invalid_value"


@dataclass
class DecodedEvents:
    """A decoded batch: the events as one frame, the message of each row, the undecodable."""

    frame: pd.DataFrame
    messages: list[Message]
    dead: list[dlq.DeadLetter]


class EventDecoder:
    """Decodes and validates batches of one record type (``model``) read with ``serde``."""

    def __init__(self, model: type[Event], serde: Serde) -> None:
        self.model = model
        self.serde = serde
        # The batch decoder reads what the serde's own schema version wrote, single-object framed;
        # the serde, record by record, everything else.
        self.decoder = (
            ColumnarDecoder(serde.schema, serde.header)
            if isinstance(serde, SingleObjectSerde)
            else None
        )

    def decode(self, messages: list[Message]) -> DecodedEvents:
        """Decode a batch into one frame (undecodable messages become dead letters)."""
        payloads = [msg.value() or b"" for msg in messages]
        if self.decoder is not None and payloads:
            columns, fast = self.decoder.decode(payloads)
        else:
            columns, fast = {}, np.zeros(len(messages), dtype=bool)
        slow_rows: list[int] = []
        events: list[dict[str, Any]] = []
        dead: list[dlq.DeadLetter] = []
        for row in np.flatnonzero(~fast).tolist():
            msg = messages[row]
            try:
                events.append(self.serde.decode(payloads[row], msg.topic() or ""))
                slow_rows.append(row)
            except DecodeError as exc:
                dead.append(dlq.DeadLetter(msg, exc.kind, str(exc)))
        fast_rows = np.flatnonzero(fast)
        if not events:
            frame = pd.DataFrame(columns)
            return DecodedEvents(frame, [messages[row] for row in fast_rows.tolist()], dead)
        slow = pd.DataFrame(events)
        if not len(fast_rows):
            return DecodedEvents(slow, [messages[row] for row in slow_rows], dead)
        # Both paths in one batch (rare: a rolling upgrade, a bad message): back in input order.
        rows = np.concatenate([fast_rows, slow_rows])
        order = np.argsort(rows, kind="stable")
        frame = pd.concat([pd.DataFrame(columns), slow], ignore_index=True)
        frame = frame.iloc[order].reset_index(drop=True)
        return DecodedEvents(frame, [messages[row] for row in rows[order].tolist()], dead)

    def validate(self, decoded: DecodedEvents) -> DecodedEvents:
        """The events that keep the contract; the others join the dead letters."""
        frame, dead = decoded.frame, list(decoded.dead)
        if frame.empty:
            return DecodedEvents(frame, [], dead)
        problems = find_problems(self.model, frame)
        if not problems:
            return DecodedEvents(frame, decoded.messages, dead)
        bad = {p.row for p in problems}
        dead += [
            dlq.DeadLetter(decoded.messages[p.row], INVALID_VALUE, f"{p.field}: {p.reason}")
            for p in problems
        ]
        keep = [row for row in range(len(frame)) if row not in bad]
        return DecodedEvents(
            frame.iloc[keep].reset_index(drop=True),
            [decoded.messages[row] for row in keep],
            dead,
        )

    def read(self, messages: list[Message]) -> DecodedEvents:
        """Decode, then validate."""
        return self.validate(self.decode(messages))
