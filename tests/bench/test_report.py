"""The benchmark page is generated from the result files, plots and all."""

from __future__ import annotations

from pathlib import Path

from bench.common import RESULTS
from bench.report import SECTIONS, write_report

ROOT = Path(__file__).resolve().parents[2]


def test_every_result_file_gets_its_section_and_plot(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    written = write_report(RESULTS, output)
    assert written == list(SECTIONS)  # every benchmark has a committed result
    page = output.read_text()
    for name in SECTIONS:
        assert (tmp_path / "benchmarks" / f"{name}.png").stat().st_size > 1000
        assert f"python -m bench.{name}" in page
    assert "measured 20" in page  # each section dates its figures


def test_the_committed_page_shows_the_committed_results(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    write_report(RESULTS, output)
    committed = (ROOT / "docs" / "benchmarks.md").read_text()
    assert output.read_text() == committed, "stale docs/benchmarks.md: python -m bench.report"
