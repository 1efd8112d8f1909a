"""Columnar Avro encoding: a whole batch of flat records in a handful of numpy operations.

fastavro writes one record per call; at stream rates that per-record cost is the publisher's
largest stage. A flat record (primitives, enums,
strings, ``["null", T]`` unions, timestamp and uuid logical types) can instead be encoded column by
column: each field becomes a zero-padded byte matrix (one row per record) with the length used in
each row; the matrices side by side, masked to those lengths and read row-major, are the records
back to back. The output is byte-for-byte what fastavro writes (``tests/ridestream/serde/test_columnar.py``
proves it on generated batches), framed as single-object messages.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import fastavro
import numpy as np
import pandas as pd

from ridestream.contracts.exceptions import InvalidEventError
from ridestream.contracts.schemas import SchemaVersion
from ridestream.serde.columnar import INTS, Field, Piece, plan


def _plain(value: Any) -> Any:
    """What fastavro writes of a value: models as their dicts, tuples as lists."""
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _whole(field: Field, values: Sequence[Any]) -> Piece:
    """A field fastavro writes, one distinct value at a time.

    Fields of this kind (a decision's actions, the models it used) take a handful of distinct
    values over thousands of records: each is written once, then copied. Values are remembered by
    themselves when hashable (pass tuples), else by their repr.
    """
    memo = field.encoded
    if len(memo) > 10_000:  # many distinct values: this field gains nothing from memory
        memo.clear()
    encoded = []
    for value in values:
        try:
            key = (type(value), value)
            hash(key)
        except TypeError:
            key = (type(value), repr(value))
        data = memo.get(key)
        if data is None:
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, field.writer, _plain(value))
            data = memo[key] = buffer.getvalue()
        encoded.append(data)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    width = max(int(lengths.max()) if len(encoded) else 0, 1)
    matrix = np.array(encoded, dtype=f"S{width}").view(np.uint8).reshape(len(encoded), width)
    return lengths, matrix


def zigzag_varints(values: np.ndarray) -> Piece:
    """Avro's int/long encoding of every value: zigzag, then 7-bit groups, low group first."""
    v = values.astype(np.int64, copy=False)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    nbytes = np.ones(len(z), dtype=np.int64)
    rest = z >> np.uint64(7)
    while rest.any():
        nbytes += rest != 0
        rest >>= np.uint64(7)
    width = int(nbytes.max()) if len(z) else 1
    positions = np.arange(width)
    groups = (
        (z[:, None] >> (positions.astype(np.uint64) * np.uint64(7))) & np.uint64(0x7F)
    ).astype(np.uint8)
    groups |= np.where(positions[None, :] < (nbytes[:, None] - 1), 0x80, 0).astype(np.uint8)
    return nbytes, groups


def _fixed(values: np.ndarray, dtype: str) -> Piece:
    size = np.dtype(dtype).itemsize
    matrix = np.ascontiguousarray(values, dtype=dtype).view(np.uint8).reshape(len(values), size)
    return np.full(len(values), size, dtype=np.int64), matrix


def _strings(values: Sequence[str]) -> list[Piece]:
    encoded = [s.encode() for s in values]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    width = max(int(lengths.max()) if len(encoded) else 0, 1)
    # numpy's fixed-width bytes type zero-pads each value to the widest: the padded matrix for free.
    matrix = np.array(encoded, dtype=f"S{width}").view(np.uint8).reshape(len(encoded), width)
    return [zigzag_varints(lengths), (lengths, matrix)]


def _millis(column: Any, aware: bool, name: str) -> np.ndarray:
    if isinstance(column, np.ndarray) and column.dtype.kind in "iuM":  # ms, or naive instants
        if column.dtype.kind == "M":
            return column.astype("datetime64[ms]").view(np.int64)
        return column.astype(np.int64, copy=False)
    series = pd.Series(column)
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.to_numpy(dtype=np.int64)
    series = pd.to_datetime(series, utc=aware)
    if aware:
        series = series.dt.tz_localize(None)
    elif series.dt.tz is not None:
        raise InvalidEventError(name, "a local timestamp must not carry a timezone")
    return series.to_numpy(dtype="datetime64[ms]").view(np.int64)


def _values(field: Field, column: Any) -> list[Piece]:
    """The pieces of one non-null column."""
    kind, name = field.kind, field.name
    if field.logical == "uuid":
        return _strings([str(u) for u in column])
    if field.logical in ("timestamp-millis", "local-timestamp-millis"):
        return [zigzag_varints(_millis(column, field.logical == "timestamp-millis", name))]
    if kind in INTS:
        ints = np.asarray(column)
        if ints.dtype.kind not in "iu":
            if ints.dtype.kind == "f" and not np.array_equal(ints, np.round(ints)):
                raise InvalidEventError(name, "an integer is required")
            ints = ints.astype(np.int64)
        low, high = INTS[kind]
        if len(ints) and (ints.min() < low or ints.max() > high):
            raise InvalidEventError(name, f"out of range for an Avro {kind}")
        return [zigzag_varints(ints)]
    if kind == "double":
        return [_fixed(np.asarray(column, dtype=np.float64), "<f8")]
    if kind == "float":
        return [_fixed(np.asarray(column, dtype=np.float32), "<f4")]
    if kind == "boolean":
        return [_fixed(np.asarray(column, dtype=bool).astype(np.uint8), "u1")]
    if kind == "string":
        return _strings(list(column))
    index = {symbol: i for i, symbol in enumerate(field.symbols)}
    try:
        codes = np.fromiter((index[s] for s in column), dtype=np.int64, count=len(column))
    except KeyError as exc:
        raise InvalidEventError(
            name, f"{exc.args[0]!r} is not one of {list(field.symbols)}"
        ) from None
    return [zigzag_varints(codes)]


def _present(field: Field, series: pd.Series) -> Any:
    """A column's non-null values in the form ``_values`` takes for the field's kind."""
    if field.logical in ("timestamp-millis", "local-timestamp-millis"):
        return series
    if field.kind in INTS:
        return (
            series.to_numpy(dtype=np.int64)
            if series.dtype.kind in "iub"
            or isinstance(series.dtype, pd.api.extensions.ExtensionDtype)
            else series.to_numpy()
        )
    if field.kind in ("double", "float", "boolean"):
        return series.to_numpy(dtype=np.float64 if field.kind != "boolean" else bool)
    return series.tolist()


_TIMESTAMPS = ("timestamp-millis", "local-timestamp-millis")


def _split(field: Field, column: Any, n: int) -> tuple[np.ndarray, Any] | None:
    """Which rows are missing and the present values, for the columns that need no pandas to
    tell (numpy arrays, lists of text, datetime columns); None for the others.

    A batch pays pandas' per-call overhead once per field whatever its size, which for small
    batches outweighs the encoding itself.
    """
    if isinstance(column, pd.Series) and isinstance(column.dtype, pd.DatetimeTZDtype):
        if field.logical != "timestamp-millis":
            return None  # a local timestamp with a zone: pandas' path names the error
        column = column.to_numpy(dtype="datetime64[ms]")  # the UTC instants
    elif isinstance(column, pd.Series) and isinstance(column.dtype, np.dtype):
        column = column.to_numpy()
    if isinstance(column, np.ndarray):
        kind = column.dtype.kind
        if kind == "M" and field.logical not in _TIMESTAMPS:
            return None
        if kind in "iub":
            return np.zeros(n, dtype=bool), column
        if kind in "fM":
            missing = np.isnan(column) if kind == "f" else np.isnat(column)
            return missing, column[~missing] if missing.any() else column
        return None
    if (
        isinstance(column, list)
        and field.kind in ("string", "enum")
        and all(type(value) is str for value in column)
    ):
        return np.zeros(n, dtype=bool), column
    return None


def _column_pieces(field: Field, column: Any, n: int) -> list[Piece]:
    if field.kind == "whole":  # fastavro checks these values (a null too, in its union)
        try:
            return [_whole(field, list(column))]
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise InvalidEventError(field.name, str(exc)) from exc
    split = _split(field, column, n)
    if split is None:
        series = column if isinstance(column, pd.Series) else pd.Series(column)
        missing = series.isna().to_numpy(dtype=bool)
        present_values = _present(field, series.iloc[np.flatnonzero(~missing)])
    else:
        missing, present_values = split
    if field.null_branch is None:
        if missing.any():
            raise InvalidEventError(field.name, "a value is required")
        return _values(field, present_values)
    branch = np.where(missing, field.null_branch, 1 - field.null_branch)
    pieces = [zigzag_varints(branch)]
    present = np.flatnonzero(~missing)
    for lengths, matrix in _values(field, present_values):
        full_lengths = np.zeros(n, dtype=np.int64)
        full_lengths[present] = lengths
        full = np.zeros((n, matrix.shape[1]), dtype=np.uint8)
        full[present] = matrix
        pieces.append((full_lengths, full))
    return pieces


class ColumnarEncoder:
    """Encodes batches of one record type into single-object framed messages: flat fields column
    by column, any other field (arrays, nested records) value by value through fastavro."""

    def __init__(self, schema: SchemaVersion, header: bytes) -> None:
        self.schema = schema
        self.header = np.frombuffer(header, dtype=np.uint8)
        self.fields = plan(schema, whole=True)

    def encode(self, columns: Mapping[str, Any], n: int) -> list[bytes]:
        """Encode ``n`` rows given as one column per field; InvalidEventError names a bad field."""
        header = np.broadcast_to(self.header, (n, len(self.header)))
        pieces: list[Piece] = [(np.full(n, len(self.header), dtype=np.int64), header)]
        for field in self.fields:
            if field.name not in columns:
                raise InvalidEventError(field.name, "missing column")
            column = columns[field.name]
            if len(column) != n:
                raise InvalidEventError(field.name, f"{len(column)} values for {n} rows")
            pieces += _column_pieces(field, column, n)
        if n == 0:
            return []
        matrix = np.hstack([m for _, m in pieces])
        used = np.hstack(
            [np.arange(m.shape[1])[None, :] < lengths[:, None] for lengths, m in pieces]
        )
        buffer = matrix[used].tobytes()  # row-major: each record's bytes, records back to back
        ends = np.cumsum(used.sum(axis=1)).tolist()
        starts = [0, *ends[:-1]]
        return [buffer[s:e] for s, e in zip(starts, ends, strict=True)]
