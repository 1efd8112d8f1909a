"""How the predict loop sizes its transactions: pure logic, no broker."""

from __future__ import annotations

from typing import Any, cast

import pandas as pd
import pytest

from consumers.predictor import BatchOutcome, Committing, Predictor, PreparedBatch
from ridestream.settings import PredictorSettings
from tests.conftest import make_settings


class Commit:
    """A commit that has or has not ended (what the loop asks of one)."""

    def __init__(self, ended: bool) -> None:
        self.ended = ended

    def done(self) -> bool:
        return self.ended


def predictor(max_batches: int = 4, committing: bool | None = None) -> Predictor:
    loop = PredictorSettings(batch_max_messages=100, transaction_max_batches=max_batches)
    # Never connects: a champion is given, so the registry is not asked either.
    made = Predictor(
        make_settings("127.0.0.1:1", predictor=loop), "duration", champion=cast(Any, object())
    )
    if committing is not None:
        made._committing = Committing(cast(Any, Commit(ended=not committing)), [])
    return made


def batches(*sizes: int) -> list[PreparedBatch]:
    return [PreparedBatch(pd.DataFrame(), [], [], BatchOutcome(n, n, 0)) for n in sizes]


@pytest.mark.parametrize(
    ("sizes", "committing", "takes_another"),
    [
        ((100,), None, True),  # a full batch: a backlog
        ((100, 100, 100), False, True),
        ((100, 100, 100, 100), True, False),  # the setting's limit
        ((40,), None, False),  # a moderate rate, nothing committing: produce at once
        ((40,), False, False),
        ((40,), True, True),  # the loop would only wait for the commit
        ((100, 40), False, False),  # the backlog is worked off
    ],
)
def test_a_transaction_takes_another_batch_under_a_backlog_or_while_one_commits(
    sizes: tuple[int, ...], committing: bool | None, takes_another: bool
) -> None:
    assert predictor(committing=committing)._takes_another(batches(*sizes)) is takes_another


@pytest.mark.parametrize("committing", [None, True])
def test_one_batch_a_transaction_when_the_setting_says_so(committing: bool | None) -> None:
    assert not predictor(max_batches=1, committing=committing)._takes_another(batches(100))
