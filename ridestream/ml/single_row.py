"""One ride through a LightGBM booster by the C API's single-row fast path.

``Booster.predict`` prepares every call from scratch (input checks, a predictor, the output
buffer) whatever the input's size: for one row that preparation costs more than walking the
trees. LightGBM's C API has a path for exactly this case, ``LGBM_BoosterPredictForMatSingleRowFast``:
the configuration is built once, and each call only walks the trees. Its answers are the
booster's own (the tests compare them row by row, missing values included).
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from typing import Any

import numpy as np
from lightgbm import basic

# LightGBM's loaded C library: the Python package's own handle to it, not re-exported.
_LIB: Any = basic._LIB  # type: ignore[attr-defined]

_PREDICT_NORMAL = 0  # C_API_PREDICT_NORMAL: the raw score through the objective's transform
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class SingleRowPredictor:
    """Predicts one row of ``columns`` float64 values at a time with ``booster``."""

    def __init__(self, booster: Any, columns: int) -> None:
        self._booster = booster  # the configuration points into it: keep it alive
        self._columns = columns
        handle = ctypes.c_void_p()
        basic._safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_PREDICT_NORMAL),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # every iteration
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(columns),
                basic._c_str("num_threads=1"),
                ctypes.byref(handle),
            )
        )
        self._handle = handle
        # The configuration holds per-call scratch space: one call at a time.
        self._lock = threading.Lock()
        weakref.finalize(self, _LIB.LGBM_FastConfigFree, handle)

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """The prediction of a (1, columns) or (columns,) matrix, as a 1-element array."""
        values = np.ascontiguousarray(row, dtype=np.float64).reshape(-1)
        if len(values) != self._columns:
            raise ValueError(f"expected {self._columns} features, got {len(values)}")
        out = np.empty(1, dtype=np.float64)
        length = ctypes.c_int64(0)
        with self._lock:
            basic._safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle,
                    values.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(length),
                    out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                )
            )
        return out
