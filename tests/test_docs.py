"""The generated documentation matches what generates it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_configuration_reference_is_up_to_date_with_the_settings() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RIDESTREAM_", "XDG_"))
    }
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "configuration_reference.py")],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert generated == committed, (
        "docs/configuration.md is stale: python scripts/configuration_reference.py > "
        "docs/configuration.md"
    )
    assert "`RIDESTREAM_DECISIONS__POLICY__PRICE_INCREMENT`" in committed
