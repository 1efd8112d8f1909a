"""The training command's own logic."""

from __future__ import annotations

from pathlib import Path

from training.cli import earlier_months


def test_history_from_adds_every_earlier_month_beside_the_first(tmp_path: Path) -> None:
    for month in ("2022-11", "2022-12", "2023-01", "2023-02"):
        (tmp_path / f"green_tripdata_{month}.parquet").touch()
    first = tmp_path / "green_tripdata_2023-01.parquet"
    assert [p.name for p in earlier_months(first, "2022-12")] == ["green_tripdata_2022-12.parquet"]
    assert len(earlier_months(first, "2000-01")) == 2
    assert earlier_months(first, "2023-01") == []
