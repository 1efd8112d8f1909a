"""Vectorized validation of a batch of events against the rules of their pydantic model.

The bounds are not restated here: they are read from the model's field constraints (``ge``,
``le``, ``min_length``, ``max_length``, ``Literal`` choices, optionality), so a batch checked here
and a single event checked by ``Model.parse`` obey the same contract — a property test holds the
two to it.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import annotated_types
import numpy as np
import pandas as pd

from ridestream.contracts.events import Event


@dataclass(frozen=True)
class Problem:
    """The first rule a row breaks."""

    row: int
    field: str
    reason: str


@dataclass(frozen=True)
class _Rule:
    field: str
    required: bool
    kind: str  # number | integer | text | choice | timestamp | other
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    choices: tuple[Any, ...] = ()


def _base(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``| None``, and whether None was allowed."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


@cache  # a model's fields do not change; every batch of every consumer asks
def rules_of(model: type[Event]) -> tuple[_Rule, ...]:
    """One rule per model field, in field order, from the model's own constraints."""
    rules = []
    for name, info in model.model_fields.items():
        base, nullable = _base(info.annotation)
        bounds: dict[str, Any] = {}
        for meta in info.metadata:
            if isinstance(meta, annotated_types.Ge):
                bounds["ge"] = meta.ge
            elif isinstance(meta, annotated_types.Le):
                bounds["le"] = meta.le
            elif isinstance(meta, annotated_types.MinLen):
                bounds["min_length"] = meta.min_length
            elif isinstance(meta, annotated_types.MaxLen):
                bounds["max_length"] = meta.max_length
        if typing.get_origin(base) is Literal:
            kind, bounds["choices"] = "choice", typing.get_args(base)
        elif base is bool:
            kind = "other"
        elif base is int:
            kind = "integer"
        elif base is float:
            kind = "number"
        elif base is str:
            kind = "text"
        elif isinstance(base, type) and base.__name__ in ("AwareDatetime", "NaiveDatetime"):
            kind = "timestamp"
        else:
            kind = "other"
        rules.append(_Rule(name, required=not nullable, kind=kind, **bounds))
    return tuple(rules)


def _missing(column: pd.Series) -> np.ndarray:
    """Which rows hold no value; numpy-typed columns answer without pandas' machinery (a batch's
    fixed cost: a check per field, each dear through ``isna``)."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind == "f":
            return np.asarray(np.isnan(column.to_numpy()))
        if dtype.kind in "iub":
            return np.zeros(len(column), dtype=bool)
        if dtype.kind in "mM":
            return np.asarray(np.isnat(column.to_numpy()))
    return column.isna().to_numpy(dtype=bool)


def _numbers(column: pd.Series) -> np.ndarray:
    """A column as float64, NaN where missing or not a number."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
        return column.to_numpy(dtype=np.float64)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_numeric_dtype(dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _broken(rule: _Rule, column: pd.Series) -> tuple[np.ndarray, str]:
    """Rows of a column that break a rule, and why (one reason per rule)."""
    missing = _missing(column)
    bad = missing.copy() if rule.required else np.zeros(len(column), dtype=bool)
    reasons = ["a value is required"] if rule.required else []
    present = ~missing
    if rule.kind in ("number", "integer"):
        values = _numbers(column)
        not_number = present & np.isnan(values)
        if rule.kind == "integer":
            not_number |= present & ~np.isnan(values) & (values != np.round(values))
        bad |= not_number | (present & np.isinf(values))
        reasons.append("must be a finite " + ("integer" if rule.kind == "integer" else "number"))
        with np.errstate(invalid="ignore"):
            if rule.ge is not None:
                bad |= present & (values < rule.ge)
            if rule.le is not None:
                bad |= present & (values > rule.le)
        if rule.ge is not None or rule.le is not None:
            reasons.append(f"must be within [{rule.ge}, {rule.le}]")
    elif rule.kind == "text":
        # A string column (what decoders and pandas make of text) holds text or missing values
        # only: the per-row type check is for object columns.
        if not isinstance(column.dtype, pd.StringDtype):
            bad |= present & ~column.map(lambda value: isinstance(value, str)).to_numpy(dtype=bool)
            column = column.astype("string")
        reasons.append("must be text")
        lengths = column.str.len().to_numpy(dtype=np.float64, na_value=np.nan)
        if rule.min_length is not None:
            bad |= present & (lengths < rule.min_length)
        if rule.max_length is not None:
            bad |= present & (lengths > rule.max_length)
        reasons.append(f"length must be within [{rule.min_length}, {rule.max_length}]")
    elif rule.kind == "choice":
        bad |= present & ~column.isin(rule.choices).to_numpy(dtype=bool)
        reasons.append(f"must be one of {list(rule.choices)}")
    return bad, "; ".join(reasons)


def find_problems(model: type[Event], frame: pd.DataFrame) -> list[Problem]:
    """The first broken rule of every invalid row (fields absent from the frame are skipped:
    the caller fills them with valid values, as the publisher does with event ids and times)."""
    first: dict[int, Problem] = {}
    for rule in rules_of(model):
        if rule.field not in frame.columns:
            continue
        bad, reason = _broken(rule, frame[rule.field])
        for row in np.flatnonzero(bad).tolist():
            first.setdefault(row, Problem(row, rule.field, reason))
    return [first[row] for row in sorted(first)]
