"""Extend a Parquet file by whole row groups without re-encoding the ones it keeps.

A daily run adds a day to each symbol's latest result file. Re-encoding a year of rows to add one
day is what made `generate kline-type` scale with history; here the file's leading row groups
are copied as raw bytes and only the rebuilt tail is encoded (by pyarrow, into a temporary file).
The footer (Thrift compact protocol) is rewritten: the tail's row groups are shifted by the
length of the kept bytes and appended to the kept ones. The codec below is generic (it keeps
every field it does not know), so only offsets and counts are touched.

A Parquet file is `PAR1`, the column chunks of each row group in order, the footer, its length
(4 bytes little-endian) and `PAR1`. Files with page indexes, bloom filters or encryption put
other bytes between the row groups and the footer; `splice` refuses them (the caller rebuilds).
"""

from __future__ import annotations

import struct
from pathlib import Path

from bhds import storage

MAGIC = b"PAR1"

# Thrift compact protocol types.
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

Struct = list  # [(field id, type, value), ...] in wire order


class SpliceError(Exception):
    """The files cannot be spliced safely; the caller builds the file from scratch instead."""


# ---- Thrift compact codec ----

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _list_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(size, element type, position after) of a list or set header."""
    head = data[pos]
    size, elem = head >> 4, head & 0x0F
    if size == 15:
        size, pos = _varint(data, pos + 1)
        return size, elem, pos
    return size, elem, pos + 1


def _field_header(data: bytes, pos: int, last: int) -> tuple[int, int, int] | None:
    """(field id, type, position after) of a struct's next field header; None at its end."""
    head = data[pos]
    if head == 0:
        return None
    kind, delta = head & 0x0F, head >> 4
    if delta:
        return last + delta, kind, pos + 1
    raw, pos = _varint(data, pos + 1)
    return _zigzag(raw), kind, pos


def _read_value(data: bytes, pos: int, kind: int) -> tuple[object, int]:
    if kind in (_TRUE, _FALSE):  # only inside lists (a field carries its bool in the type)
        return data[pos], pos + 1
    if kind == _BYTE:
        return data[pos], pos + 1
    if kind in (_I16, _I32, _I64):
        raw, pos = _varint(data, pos)
        return _zigzag(raw), pos
    if kind == _DOUBLE:
        return data[pos:pos + 8], pos + 8
    if kind == _BINARY:
        size, pos = _varint(data, pos)
        return data[pos:pos + size], pos + size
    if kind in (_LIST, _SET):
        size, elem, pos = _list_header(data, pos)
        items = []
        for _ in range(size):
            item, pos = _read_value(data, pos, elem)
            items.append(item)
        return (elem, items), pos
    if kind == _STRUCT:
        return _read_struct(data, pos)
    raise SpliceError(f"unsupported Thrift type {kind}")  # maps: not in a Parquet footer


def _read_struct(data: bytes, pos: int) -> tuple[Struct, int]:
    fields: Struct = []
    last = 0
    while True:
        header = _field_header(data, pos, last)
        if header is None:
            return fields, pos + 1
        fid, kind, pos = header
        if kind in (_TRUE, _FALSE):
            value: object = kind == _TRUE
        else:
            value, pos = _read_value(data, pos, kind)
        fields.append((fid, kind, value))
        last = fid


def _put_varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _put_int(out: bytearray, n: int) -> None:
    _put_varint(out, (n << 1) ^ (n >> 63))


def _write_value(out: bytearray, kind: int, value: object) -> None:
    if kind in (_TRUE, _FALSE, _BYTE):
        out.append(value)  # type: ignore[arg-type]
    elif kind in (_I16, _I32, _I64):
        _put_int(out, value)  # type: ignore[arg-type]
    elif kind == _DOUBLE:
        out += value  # type: ignore[operator]
    elif kind == _BINARY:
        _put_varint(out, len(value))  # type: ignore[arg-type]
        out += value  # type: ignore[operator]
    elif kind in (_LIST, _SET):
        elem, items = value  # type: ignore[misc]
        if len(items) < 15:
            out.append(len(items) << 4 | elem)
        else:
            out.append(0xF0 | elem)
            _put_varint(out, len(items))
        for item in items:
            _write_value(out, elem, item)
    elif kind == _STRUCT:
        _write_struct(out, value)  # type: ignore[arg-type]
    else:
        raise SpliceError(f"unsupported Thrift type {kind}")


def _put_field_header(out: bytearray, fid: int, last: int, kind: int, value: object) -> None:
    wire = (_TRUE if value else _FALSE) if kind in (_TRUE, _FALSE) else kind
    if 0 < fid - last <= 15:
        out.append((fid - last) << 4 | wire)
    else:
        out.append(wire)
        _put_int(out, fid)


def _write_struct(out: bytearray, fields: Struct) -> None:
    last = 0
    for fid, kind, value in fields:
        _put_field_header(out, fid, last, kind, value)
        if kind not in (_TRUE, _FALSE):
            _write_value(out, kind, value)
        last = fid
    out.append(0)


def _get(fields: Struct, fid: int, default: object = None) -> object:
    return next((value for f, _k, value in fields if f == fid), default)


def _set(fields: Struct, fid: int, value: object) -> None:
    for i, (f, kind, _old) in enumerate(fields):
        if f == fid:
            fields[i] = (f, kind, value)
            return
    raise SpliceError(f"field {fid} missing")


# ---- Parquet footers ----

# FileMetaData: 3 num_rows, 4 row_groups; RowGroup: 1 columns, 3 num_rows, 5 file_offset, 7 ordinal;
# ColumnChunk: 2 file_offset, 3 meta_data, 4/6 page index offsets, 8/9 encryption;
# ColumnMetaData: 7 total_compressed_size, 9 data, 10 index, 11 dictionary page offsets, 14 bloom filter.
_CHUNK_EXTRAS = (4, 5, 6, 7, 8, 9)
_META_EXTRAS = (14, 15)
_META_OFFSETS = (9, 10, 11)


def read_footer(data: bytes) -> Struct:
    if data[:4] != MAGIC or data[-4:] != MAGIC:
        raise SpliceError("not a Parquet file")
    size = struct.unpack("<I", data[-8:-4])[0]
    fields, _ = _read_struct(data, len(data) - 8 - size)
    return fields


def _row_groups(footer: Struct) -> list[Struct]:
    return _get(footer, 4, (_STRUCT, []))[1]  # type: ignore[index]


def _columns(row_group: Struct) -> list[Struct]:
    return _get(row_group, 1)[1]  # type: ignore[index]


def _chunk_span(chunk: Struct) -> tuple[int, int]:
    """(first byte, end) of a column chunk."""
    if any(_get(chunk, fid) is not None for fid in _CHUNK_EXTRAS):
        raise SpliceError("page index, encryption or an external column chunk")
    meta: Struct = _get(chunk, 3)  # type: ignore[assignment]
    if meta is None or any(_get(meta, fid) is not None for fid in _META_EXTRAS):
        raise SpliceError("no column metadata, or a bloom filter")
    start = min(int(_get(meta, fid)) for fid in _META_OFFSETS if _get(meta, fid) is not None)  # type: ignore[arg-type]
    return start, start + int(_get(meta, 7))  # type: ignore[arg-type]


def _shift(row_group: Struct, delta: int, ordinal: int) -> None:
    for chunk in _columns(row_group):
        if _get(chunk, 2):  # deprecated; parquet-cpp writes 0, which stays 0
            _set(chunk, 2, int(_get(chunk, 2)) + delta)  # type: ignore[arg-type]
        meta: Struct = _get(chunk, 3)  # type: ignore[assignment]
        for fid in _META_OFFSETS:
            if _get(meta, fid) is not None:
                _set(meta, fid, int(_get(meta, fid)) + delta)  # type: ignore[arg-type]
    if _get(row_group, 5) is not None:
        _set(row_group, 5, int(_get(row_group, 5)) + delta)  # type: ignore[arg-type]
    if _get(row_group, 7) is not None:
        _set(row_group, 7, ordinal)


def _contiguous_end(row_groups: list[Struct]) -> int:
    """Where the given row groups' bytes end, checking they run back to back from byte 4."""
    pos = len(MAGIC)
    for row_group in row_groups:
        for chunk in _columns(row_group):
            start, end = _chunk_span(chunk)
            if start != pos:
                raise SpliceError("column chunks are not back to back")
            pos = end
    return pos


def _skip(data: bytes, pos: int, kind: int) -> int:
    """Where the value of `kind` at `pos` ends (without building it)."""
    if kind in (_TRUE, _FALSE, _BYTE):
        return pos + 1
    if kind in (_I16, _I32, _I64):
        while data[pos] & 0x80:
            pos += 1
        return pos + 1
    if kind == _DOUBLE:
        return pos + 8
    if kind == _BINARY:
        size, pos = _varint(data, pos)
        return pos + size
    if kind in (_LIST, _SET):
        size, elem, pos = _list_header(data, pos)
        for _ in range(size):
            pos = _skip(data, pos, elem)
        return pos
    if kind == _STRUCT:
        while True:
            head = data[pos]
            pos += 1
            if head == 0:
                return pos
            if not head >> 4:
                _, pos = _varint(data, pos)
            if head & 0x0F not in (_TRUE, _FALSE):
                pos = _skip(data, pos, head & 0x0F)
    raise SpliceError(f"unsupported Thrift type {kind}")


def _row_group_spans(data: bytes) -> list[tuple[int, int]]:
    """The byte span of each row group's entry in a Parquet file's footer."""
    if data[:4] != MAGIC or data[-4:] != MAGIC:
        raise SpliceError("not a Parquet file")
    pos = len(data) - 8 - struct.unpack("<I", data[-8:-4])[0]
    spans: list[tuple[int, int]] = []
    last = 0
    while True:
        header = _field_header(data, pos, last)
        if header is None:
            return spans
        last, kind, pos = header
        if last == 4 and kind == _LIST:
            size, _elem, pos = _list_header(data, pos)
            for _ in range(size):
                end = _skip(data, pos, _STRUCT)
                spans.append((pos, end))
                pos = end
        elif kind not in (_TRUE, _FALSE):
            pos = _skip(data, pos, kind)


def splice_plan(head: bytes, keep: int, tail: bytes) -> tuple[int, bytes]:
    """How to make a Parquet file of `head`'s first `keep` row groups followed by all of `tail`'s.

    Returns `(n, rest)`: the file is `head[:n] + rest`, so the caller can copy the kept bytes
    file to file. Both must have the same schema (the caller writes `tail` with the same writer
    settings as `head`); the rest of the footer (key-value metadata, writer) comes from `tail`.
    The kept row groups' footer entries are copied as they are; only the tail's are decoded.
    """
    spans = _row_group_spans(head)
    tail_footer = read_footer(tail)
    added = _row_groups(tail_footer)
    if not 0 < keep <= len(spans) or not added:
        raise SpliceError("not enough row groups")
    head_schema = _read_value(head, _schema_start(head), _LIST)[0]
    if head_schema != _get(tail_footer, 2):
        raise SpliceError("the files have different schemas")
    # The kept groups run back to back from byte 4 (one writer, no page index: checked on the
    # first and the last of them; every group of a file is written with the same properties).
    first, _ = _read_struct(head, spans[0][0])
    last, _ = _read_struct(head, spans[keep - 1][0])
    if _chunk_span(_columns(first)[0])[0] != len(MAGIC):
        raise SpliceError("the first row group does not start the file")
    kept_end = _contiguous_end_from(last)
    kept_rows = sum(_row_group_rows(head, span) for span in spans[:keep])
    tail_end = _contiguous_end(added)
    delta = kept_end - len(MAGIC)
    for i, row_group in enumerate(added):
        _shift(row_group, delta, keep + i)
    # The footer: the tail's fields, its row groups after the kept ones' original bytes.
    _set(tail_footer, 3, kept_rows + sum(int(_get(rg, 3)) for rg in added))  # type: ignore[arg-type]
    footer = bytearray()
    last_fid = 0
    for fid, kind, value in tail_footer:
        _put_field_header(footer, fid, last_fid, kind, value)
        if fid == 4:
            count = keep + len(added)
            if count < 15:
                footer.append(count << 4 | _STRUCT)
            else:
                footer.append(0xF0 | _STRUCT)
                _put_varint(footer, count)
            for lo, hi in spans[:keep]:
                footer += head[lo:hi]
            for row_group in added:
                _write_struct(footer, row_group)
        elif kind not in (_TRUE, _FALSE):
            _write_value(footer, kind, value)
        last_fid = fid
    footer.append(0)
    rest = b"".join([tail[len(MAGIC):tail_end], bytes(footer), struct.pack("<I", len(footer)), MAGIC])
    return kept_end, rest


def _schema_start(data: bytes) -> int:
    """Where FileMetaData's field 2 (schema list) value starts; pyarrow writes version (1) then schema (2) first."""
    pos = len(data) - 8 - struct.unpack("<I", data[-8:-4])[0]
    head = data[pos]
    if head >> 4 != 1 or head & 0x0F != _I32:
        raise SpliceError("unexpected footer layout")
    pos = _skip(data, pos + 1, _I32)
    if data[pos] != (1 << 4 | _LIST):
        raise SpliceError("unexpected footer layout")
    return pos + 1


def _row_group_rows(data: bytes, span: tuple[int, int]) -> int:
    """RowGroup.num_rows (field 3) of the row group at `span`, reading only up to it."""
    pos, last = span[0], 0
    while True:
        header = _field_header(data, pos, last)
        if header is None:
            raise SpliceError("a row group without num_rows")
        last, kind, pos = header
        if last == 3:
            return int(_read_value(data, pos, kind)[0])  # type: ignore[arg-type]
        if kind not in (_TRUE, _FALSE):
            pos = _skip(data, pos, kind)


def _contiguous_end_from(row_group: Struct) -> int:
    """Where a row group's column chunks end, checking they are back to back."""
    chunks = [_chunk_span(chunk) for chunk in _columns(row_group)]
    for (_, end), (start, _) in zip(chunks[:-1], chunks[1:]):
        if start != end:
            raise SpliceError("column chunks are not back to back")
    return chunks[-1][1]


def splice(head: bytes, keep: int, tail: bytes) -> bytes:
    """`splice_plan` as one bytes object."""
    kept_end, rest = splice_plan(head, keep, tail)
    return head[:kept_end] + rest


def footer_only(path: Path) -> bytes:
    """A Parquet file's footer framed as a file (`PAR1` + footer + length + `PAR1`): all `splice_plan` reads of the head."""
    frame = storage.footer_frame(path)
    if frame is None:
        raise SpliceError("not a Parquet file")
    return frame
