"""Columnar Avro encoding: a whole batch of flat records in a handful of numpy operations.

fastavro writes one record per call (~15 µs for a RideStarted with its logical types); at stream
rates that per-record cost is the publisher's largest stage. A flat record (primitives, enums,
strings, ``["null", T]`` unions, timestamp and uuid logical types) can instead be encoded column by
column: each field becomes a zero-padded byte matrix (one row per record) with the length used in
each row; the matrices side by side, masked to those lengths and read row-major, are the records
back to back. The output is byte-for-byte what fastavro writes (``tests/ridestream/serde/test_columnar.py``
proves it on generated batches), framed as single-object messages.

:class:`ColumnarDecoder` is the way back for the consumers: reading a RideStarted with fastavro
(~16 µs, plus building a frame from the dicts) was the largest stage of the predictor once the
model was compiled. It reads every field of a whole batch at once, a position per record advanced
field by field with numpy gathers from the joined payloads, and hands back columns. It decodes only
what it can prove well formed (the reader's own fingerprint, every field in range, the last byte
reached); everything else is left to the per-record serde, which resolves other writer versions
and names what is wrong.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
import numpy as np
import pandas as pd

from ridestream.contracts.schemas import SchemaVersion
from ridestream.exceptions import SchemaError, ValidationError

_INTS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_SUPPORTED = {"boolean", "int", "long", "float", "double", "string", "enum"}

Piece = tuple[
    np.ndarray, np.ndarray
]  # (bytes used per row, zero-padded (rows, width) uint8 matrix)


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # boolean | int | long | float | double | string | enum | whole
    logical: str | None
    null_branch: int | None  # position of "null" in a ["null", T] union; None = required
    symbols: tuple[str, ...] = ()
    # kind "whole" (arrays, records, maps, other unions: encoded value by value, see _whole)
    writer: Any = None  # the field's parsed schema
    encoded: dict[Any, bytes] = dataclasses.field(default_factory=dict, compare=False)


def _plan(schema: SchemaVersion, *, whole: bool = False) -> list[_Field]:
    """The fields of a flat record; with ``whole``, any other field is written value by value."""
    named: dict[str, Any] = {}
    fastavro.parse_schema(schema.raw, named_schemas=named)
    fields = []
    for field in schema.raw["fields"]:
        if whole and not _flat(field["type"]):
            writer = fastavro.parse_schema(field["type"], named_schemas=named)
            fields.append(_Field(field["name"], "whole", None, None, writer=writer))
            continue
        avro, null_branch = field["type"], None
        if isinstance(avro, list):
            others = [b for b in avro if b != "null"]
            if len(avro) != 2 or len(others) != 1:
                raise SchemaError(
                    f"{schema.name}.{field['name']}: only [null, T] unions are columnar"
                )
            null_branch, avro = avro.index("null"), others[0]
        spec = avro if isinstance(avro, dict) else {"type": avro}
        if spec["type"] not in _SUPPORTED:
            raise SchemaError(f"{schema.name}.{field['name']}: {spec['type']} is not columnar")
        fields.append(
            _Field(
                field["name"],
                spec["type"],
                spec.get("logicalType"),
                null_branch,
                tuple(spec.get("symbols", ())),
            )
        )
    return fields


def _flat(avro: Any) -> bool:
    """Whether a field type is columnar: a supported type, or [null, one]."""
    if isinstance(avro, list):
        others = [b for b in avro if b != "null"]
        return len(avro) == 2 and len(others) == 1 and _flat(others[0])
    spec = avro if isinstance(avro, dict) else {"type": avro}
    return spec["type"] in _SUPPORTED


def _plain(value: Any) -> Any:
    """What fastavro writes of a value: models as their dicts, tuples as lists."""
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _whole(field: _Field, values: Sequence[Any]) -> Piece:
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
        raise ValidationError(name, "a local timestamp must not carry a timezone")
    return series.to_numpy(dtype="datetime64[ms]").view(np.int64)


def _values(field: _Field, column: Any) -> list[Piece]:
    """The pieces of one non-null column."""
    kind, name = field.kind, field.name
    if field.logical == "uuid":
        return _strings([str(u) for u in column])
    if field.logical in ("timestamp-millis", "local-timestamp-millis"):
        return [zigzag_varints(_millis(column, field.logical == "timestamp-millis", name))]
    if kind in _INTS:
        ints = np.asarray(column)
        if ints.dtype.kind not in "iu":
            if ints.dtype.kind == "f" and not np.array_equal(ints, np.round(ints)):
                raise ValidationError(name, "an integer is required")
            ints = ints.astype(np.int64)
        low, high = _INTS[kind]
        if len(ints) and (ints.min() < low or ints.max() > high):
            raise ValidationError(name, f"out of range for an Avro {kind}")
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
        raise ValidationError(
            name, f"{exc.args[0]!r} is not one of {list(field.symbols)}"
        ) from None
    return [zigzag_varints(codes)]


def _present(field: _Field, series: pd.Series) -> Any:
    """A column's non-null values in the form ``_values`` takes for the field's kind."""
    if field.logical in ("timestamp-millis", "local-timestamp-millis"):
        return series
    if field.kind in _INTS:
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


def _split(field: _Field, column: Any, n: int) -> tuple[np.ndarray, Any] | None:
    """Which rows are missing and the present values, for the columns that need no pandas to
    tell (numpy arrays, lists of text, datetime columns); None for the others.

    A batch pays pandas' per-call overhead once per field whatever its size: through pandas,
    a batch of predictions cost ~2.8 ms before its first record.
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


def _column_pieces(field: _Field, column: Any, n: int) -> list[Piece]:
    if field.kind == "whole":  # fastavro checks these values (a null too, in its union)
        try:
            return [_whole(field, list(column))]
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise ValidationError(field.name, str(exc)) from exc
    split = _split(field, column, n)
    if split is None:
        series = column if isinstance(column, pd.Series) else pd.Series(column)
        missing = series.isna().to_numpy(dtype=bool)
        present_values = _present(field, series.iloc[np.flatnonzero(~missing)])
    else:
        missing, present_values = split
    if field.null_branch is None:
        if missing.any():
            raise ValidationError(field.name, "a value is required")
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
        self.fields = _plan(schema, whole=True)

    def encode(self, columns: Mapping[str, Any], n: int) -> list[bytes]:
        """Encode ``n`` rows given as one column per field; ValidationError names a bad field."""
        header = np.broadcast_to(self.header, (n, len(self.header)))
        pieces: list[Piece] = [(np.full(n, len(self.header), dtype=np.int64), header)]
        for field in self.fields:
            if field.name not in columns:
                raise ValidationError(field.name, "missing column")
            column = columns[field.name]
            if len(column) != n:
                raise ValidationError(field.name, f"{len(column)} values for {n} rows")
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


def random_uuids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs as strings, without n calls to uuid.uuid4()."""
    raw = bytearray(np.random.default_rng().bytes(16 * n))
    view = np.frombuffer(raw, dtype=np.uint8).reshape(n, 16)
    view[:, 6] = (view[:, 6] & 0x0F) | 0x40  # version 4
    view[:, 8] = (view[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


_VARINT_MAX = 10  # bytes of the longest varint (a 64-bit long)
_SHIFTS = [np.uint64(7 * k) for k in range(_VARINT_MAX)]
_UUID_DASHES = (8, 13, 18, 23)
# What a Python datetime can hold (years 1-9999) in Unix milliseconds: fastavro fails beyond it.
_DATETIME_MS = (-62_135_596_800_000, 253_402_300_799_999)
_HEX = np.zeros(256, dtype=bool)
_HEX[list(b"0123456789abcdef")] = True


def _varints(data: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The zigzag varint at each position: values, bytes used, and whether one ended in 10 bytes."""
    z = np.zeros(len(pos), dtype=np.uint64)
    used = np.zeros(len(pos), dtype=np.int64)
    going = np.ones(len(pos), dtype=bool)
    # Byte by byte across the batch, for as many bytes as the longest varint has: most are short.
    for shift in _SHIFTS:
        byte = data[pos + used]
        z |= ((byte & 0x7F).astype(np.uint64) << shift) * going
        used += going
        going &= byte >= 0x80
        if not going.any():
            break
    values = (z >> np.uint64(1)).astype(np.int64) ^ -(z & np.uint64(1)).astype(np.int64)
    return values, used, ~going


class ColumnarDecoder:
    """Decodes batches of one flat record type, framed single-object, into columns."""

    def __init__(self, schema: SchemaVersion, header: bytes) -> None:
        self.schema = schema
        self.header = np.frombuffer(header, dtype=np.uint8)
        self.fields = _plan(schema)

    def decode(self, payloads: Sequence[bytes]) -> tuple[dict[str, Any], np.ndarray]:
        """The columns of the payloads decoded here, and which those are (a boolean mask).

        Rows outside the mask (another writer version, bad framing, a corrupt or trailing body, a
        uuid not in canonical form) are for the per-record decoder; their values are absent from
        the columns, which hold the masked rows in order.
        """
        n = len(payloads)
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
        ends = np.cumsum(lengths)
        blob = b"".join(payloads)
        # Padding: a garbage position or length reads zeros past the end, never out of bounds.
        data = np.frombuffer(blob + bytes(64), dtype=np.uint8)
        starts = ends - lengths
        width = len(self.header)
        ok = (lengths >= width) & (data[starts[:, None] + np.arange(width)] == self.header).all(1)
        pos = starts + width
        raw: dict[str, tuple[Any, np.ndarray]] = {}
        for field in self.fields:
            present = np.ones(n, dtype=bool)
            if field.null_branch is not None:
                branch, used, valid = _varints(data, pos)
                ok &= valid & ((branch == 0) | (branch == 1))
                pos = pos + used
                ok &= pos <= ends  # checked before clamping: the last record's end is the blob's
                present = ok & (branch != field.null_branch)
                pos = np.minimum(pos, len(blob))
            values, used, valid = self._read(field, data, blob, pos, present & ok)
            ok &= valid | ~present
            pos = pos + np.where(present, used, 0)
            ok &= pos <= ends
            pos = np.minimum(pos, len(blob))
            raw[field.name] = (values, present)
        ok &= pos == ends
        return {
            name: self._column(field, *raw[field.name], ok)
            for name, field in zip(raw, self.fields, strict=True)
        }, ok

    def _read(
        self, field: _Field, data: np.ndarray, blob: bytes, pos: np.ndarray, wanted: np.ndarray
    ) -> tuple[Any, np.ndarray, np.ndarray]:
        """One field at every position: values, bytes used, valid. Only ``wanted`` rows matter."""
        n = len(pos)
        if field.kind == "double" or field.kind == "float":
            size, dtype = (8, "<f8") if field.kind == "double" else (4, "<f4")
            window = np.ascontiguousarray(data[pos[:, None] + np.arange(size)])
            values = window.view(dtype).reshape(n).astype(np.float64)
            return values, np.full(n, size), np.ones(n, dtype=bool)
        if field.kind == "boolean":
            byte = data[pos]
            return byte == 1, np.ones(n, dtype=np.int64), byte <= 1
        values, used, valid = _varints(data, pos)
        if field.kind == "int":
            valid &= (values >= -(2**31)) & (values < 2**31)
        elif field.kind == "enum":
            valid &= (values >= 0) & (values < len(field.symbols))
        elif field.logical in ("timestamp-millis", "local-timestamp-millis"):
            valid &= (values >= _DATETIME_MS[0]) & (values <= _DATETIME_MS[1])
        elif field.kind == "string":
            valid &= values >= 0
            texts, valid = self._strings(field, data, blob, pos + used, values, valid & wanted)
            return texts, used + np.maximum(values, 0), valid
        return values, used, valid

    @staticmethod
    def _strings(
        field: _Field,
        data: np.ndarray,
        blob: bytes,
        begin: np.ndarray,
        lengths: np.ndarray,
        wanted: np.ndarray,
    ) -> tuple[list[str | None], np.ndarray]:
        valid = wanted & (begin + lengths <= len(blob))
        if field.logical == "uuid":  # fastavro accepts any form UUID() does; we, the canonical one
            valid &= lengths == 36
            chars = data[np.minimum(begin, len(blob))[:, None] + np.arange(36)]
            dashes = np.zeros(36, dtype=bool)
            dashes[list(_UUID_DASHES)] = True
            valid &= (chars[:, dashes] == ord("-")).all(1) & _HEX[chars[:, ~dashes]].all(1)
        texts: list[str | None] = [None] * len(begin)
        rows = np.flatnonzero(valid)
        if field.logical == "uuid":  # 36 checked ASCII characters each: one decode for them all
            joined = chars[rows].tobytes().decode("ascii")
            for row, at in zip(rows.tolist(), range(0, 36 * len(rows), 36), strict=True):
                texts[row] = joined[at : at + 36]
            return texts, valid
        spans = zip(
            rows.tolist(), begin[rows].tolist(), (begin + lengths)[rows].tolist(), strict=True
        )
        for row, start, end in spans:
            try:
                texts[row] = blob[start:end].decode()
            except UnicodeDecodeError:
                valid[row] = False
        return texts, valid

    def _column(self, field: _Field, values: Any, present: np.ndarray, ok: np.ndarray) -> Any:
        """The decoded rows of one field, typed as pandas would type the records' values."""
        mask = present[ok]
        if field.kind == "string":
            return [text for text, keep in zip(values, ok.tolist(), strict=True) if keep]
        if field.kind == "enum":
            names = np.array([*field.symbols, None], dtype=object)
            return names[np.where(mask, values[ok], len(field.symbols))].tolist()
        if field.logical in ("timestamp-millis", "local-timestamp-millis"):
            stamps = np.where(mask, values[ok], 0).astype("datetime64[ms]")
            stamps[~mask] = np.datetime64("NaT")
            series = pd.Series(stamps)
            return series.dt.tz_localize("UTC") if field.logical == "timestamp-millis" else series
        if field.kind in _INTS:
            ints: np.ndarray[Any, np.dtype[np.signedinteger[Any]]] = np.where(
                mask, values[ok], 0
            ).astype(np.int32 if field.kind == "int" else np.int64)
            return ints if field.null_branch is None else pd.arrays.IntegerArray(ints, ~mask)
        if field.kind == "boolean":
            flags = values[ok] & mask
            return flags if field.null_branch is None else pd.arrays.BooleanArray(flags, ~mask)
        return np.where(mask, values[ok], np.nan)


__all__ = ["ColumnarDecoder", "ColumnarEncoder", "random_uuids", "zigzag_varints"]
