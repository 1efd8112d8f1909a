"""Columnar Avro decoding: a whole batch of single-object messages in numpy gathers.

:class:`ColumnarDecoder` is the way back for the consumers: fastavro reads one record per call,
and a frame must then be built from the dicts, the predictor's largest stage once the model is
compiled. It reads every field of a whole batch at once, a position per record advanced
field by field with numpy gathers from the joined payloads, and hands back columns. It decodes only
what it can prove well formed (the reader's own fingerprint, every field in range, the last byte
reached); everything else is left to the per-record serde, which resolves other writer versions
and names what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ridestream.contracts.schemas import SchemaVersion
from ridestream.serde.columnar import INTS, Field, plan

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
        self.fields = plan(schema)

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
        self, field: Field, data: np.ndarray, blob: bytes, pos: np.ndarray, wanted: np.ndarray
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
        field: Field,
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

    def _column(self, field: Field, values: Any, present: np.ndarray, ok: np.ndarray) -> Any:
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
        if field.kind in INTS:
            ints: np.ndarray[Any, np.dtype[np.signedinteger[Any]]] = np.where(
                mask, values[ok], 0
            ).astype(np.int32 if field.kind == "int" else np.int64)
            return ints if field.null_branch is None else pd.arrays.IntegerArray(ints, ~mask)
        if field.kind == "boolean":
            flags = values[ok] & mask
            return flags if field.null_branch is None else pd.arrays.BooleanArray(flags, ~mask)
        return np.where(mask, values[ok], np.nan)
