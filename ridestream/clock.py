"""Times as the project stores and sends them: epoch milliseconds.

UTC instants for event and decision times; the city's wall clock, read as UTC numbers, for pickup,
dropoff and ETA (as in the events).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of a datetime; naive ones (wall-clock times) are read as UTC numbers."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


def epoch_ms(column: Any) -> np.ndarray:
    """Epoch milliseconds of a column of datetimes, as :func:`to_ms` does for one (a zone-aware
    column is read as the UTC instants it holds, a naive one as UTC numbers)."""
    times = column if isinstance(column, pd.Series) else pd.Series(column)
    if not pd.api.types.is_datetime64_any_dtype(times):
        times = pd.to_datetime(times)
    dtype: Any = times.dtype
    unit = dtype.unit if isinstance(dtype, pd.DatetimeTZDtype) else np.datetime_data(dtype)[0]
    if unit not in ("s", "ms"):  # finer than milliseconds: round to whole ones, as to_ms does
        times = times.dt.round("ms")
    # Straight to numpy: the .dt accessors cost far more, and a batch asks for several columns.
    return times.to_numpy(dtype="datetime64[ms]").view(np.int64)


def instant(ms: int) -> datetime:
    """A UTC instant from epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def wall_clock(ms: int) -> datetime:
    """A naive wall-clock time from the epoch milliseconds ``to_ms`` made of it."""
    return instant(ms).replace(tzinfo=None)


def now_ms() -> int:
    """The current UTC instant in epoch milliseconds."""
    return to_ms(datetime.now(UTC))
