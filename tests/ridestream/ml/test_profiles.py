from __future__ import annotations

import numpy as np

from ridestream.ml.profiles import psi, reference_profile


def profile(rng: np.random.Generator) -> dict[str, object]:
    matrix = np.column_stack(
        [rng.gamma(2.0, 1.5, 20_000), rng.integers(1, 6, 20_000).astype(float)]
    )
    matrix[rng.random(20_000) < 0.05, 1] = np.nan
    return reference_profile(matrix, ("trip_distance", "payment_type"), ("payment_type",))


def test_the_same_distribution_has_a_psi_near_zero() -> None:
    rng = np.random.default_rng(1)
    features = profile(rng)["features"]
    assert psi(features["trip_distance"], rng.gamma(2.0, 1.5, 5000)) < 0.02  # type: ignore[index]
    payments = rng.integers(1, 6, 5000).astype(float)
    payments[rng.random(5000) < 0.05] = np.nan
    assert psi(features["payment_type"], payments) < 0.02  # type: ignore[index]


def test_a_shifted_distribution_has_a_large_psi() -> None:
    rng = np.random.default_rng(2)
    features = profile(rng)["features"]
    assert psi(features["trip_distance"], rng.gamma(2.0, 1.5, 5000) * 1.8) > 0.25  # type: ignore[index]
    assert psi(features["payment_type"], np.full(5000, 2.0)) > 0.25  # type: ignore[index]


def test_profiles_record_bins_shares_and_missing() -> None:
    rng = np.random.default_rng(3)
    result = profile(rng)
    distance, payment = result["features"]["trip_distance"], result["features"]["payment_type"]  # type: ignore[index]
    assert result["rows"] == 20_000
    assert distance["kind"] == "numeric"
    assert len(distance["frequencies"]) == len(distance["edges"]) + 1
    assert abs(sum(distance["frequencies"]) + distance["missing"] - 1.0) < 1e-9
    assert payment["categories"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert abs(payment["missing"] - 0.05) < 0.01
