"""Archive zips → one monthly Parquet partition, streamed in bounded memory.

Written for trades (a month is several GB of CSV) and used for every dataset `archive parse`
reads: nothing here holds a whole file. Each zip member is decompressed as a stream, cut into
blocks of about `block_size` bytes at line ends, each block read by pyarrow's CSV parser,
converted, and written as one row group. Peak memory is a few blocks whatever the file's size.

The three steps run as a pipeline on three threads, one block apart (`ahead`): inflating the zip,
reading the CSV and writing Parquet all release the GIL, so one worker overlaps them on the
machine's cores the way pyarrow's own streaming reader overlaps its read-ahead with parsing.

The columns of each dataset are in `bhds.parse.datasets`; for trades and aggTrades:

  trades     id, price, qty, quote_qty (COIN-M: base_qty), time, is_buyer_maker[, is_best_match]
  aggTrades  agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time,
             is_buyer_maker[, is_best_match]

`is_best_match` exists in spot files only. Trade times are `timestamp[us, tz=UTC]`; the archive
writes ms or µs (spot from 2025), told apart per value. Rows are kept as the files hold them, in
file order (monthly file, or the month's daily files by day).
"""

from __future__ import annotations

import json
import queue
import threading
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bhds.parse import datasets
from bhds.parse.klines import MICROSECOND_THRESHOLD
from bhds.parse.zipcsv import BadSourceFile
from bhds.storage import PARQUET_COMPRESSION, files_signature, footer_value, numeric_encodings, open_zip, parquet_writer

TIME = datasets.TIME_US
_BOM = b"\xef\xbb\xbf"
# One CSV block per row group: about 200k trades, a few tens of MB in memory at most.
DEFAULT_BLOCK_SIZE = 16 << 20
SOURCES_KEY = b"bhds.sources"
_T = TypeVar("_T")


def columns(market: str, dataset: str) -> list[tuple[str, pa.DataType]]:
    """(name, Parquet type) of each CSV column of `dataset` in `market` (spot, um_futures, cm_futures)."""
    if dataset not in ("trades", "aggTrades"):
        raise ValueError(f"no trade schema for {dataset}")
    return [(c.name, c.type) for c in datasets.csv_columns(market, dataset)]


def schema(market: str, dataset: str) -> pa.Schema:
    return datasets.schema(market, dataset)


@dataclass(frozen=True)
class MonthTask:
    """One partition to (re)write from its zips, picklable for a worker process."""

    market: str
    dataset: str
    sources: tuple[str, ...]
    target: str
    signature: str
    block_size: int = DEFAULT_BLOCK_SIZE


def signature(sources: list[Path]) -> str:
    """What the partition was built from: each zip's name, size and mtime (a re-upload changes it)."""
    return json.dumps(files_signature(sources))


def built_from(partition: Path) -> str | None:
    """The signature stored in a partition's footer, or None (absent, unreadable, not ours)."""
    return footer_value(partition, SOURCES_KEY)


def csv_blocks(stream: BinaryIO, block_size: int) -> Iterator[bytes]:
    """The stream cut into blocks of about `block_size` bytes, each ending at a line end.

    We cut the blocks ourselves and hand pyarrow one at a time: its streaming reader reads ahead
    of the consumer, and on a multi-GB member that read-ahead alone held several hundred MB.
    """
    rest = b""
    while True:
        data = stream.read(block_size)
        if not data:
            if rest:
                yield rest
            return
        buf = rest + data if rest else data
        cut = buf.rfind(b"\n") + 1
        if cut:
            yield buf[:cut]
        rest = buf[cut:]


@contextmanager
def ahead(items: Iterable[_T], depth: int = 1) -> Iterator[Iterator[_T]]:
    """`with ahead(items) as stream:` `items`, produced on a thread of their own at most `depth`
    items ahead of the consumer.

    The bounded queue keeps memory to a few items. An exception in the producer is raised from
    `stream`. Leaving the block (done, error, interrupt) stops the producer, closes `items` and
    waits for the thread, so nothing the producer reads is closed under it.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        end: BaseException | None = None
        try:
            for item in source:
                if not put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            end = exc
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        put((False, end))

    def consume() -> Iterator[_T]:
        while True:
            more, value = handoff.get()
            if not more:
                if value is not None:
                    raise value  # type: ignore[misc]
                return
            yield value  # type: ignore[misc]

    producer = threading.Thread(target=produce, name="bhds-ahead", daemon=True)
    producer.start()
    try:
        yield consume()
    finally:
        stop.set()
        producer.join()


def _has_header(block: bytes) -> bool:
    """A first row whose first field starts with a letter is a header (data starts with a digit,
    also the `YYYY-MM-DD HH:MM:SS` times of metrics and bookDepth), detected per file."""
    comma = block.find(b",", 0, 256)
    return block[:comma if comma >= 0 else 256].strip().strip(b'"')[:1].isalpha()


def _batches(zip_path: Path, market: str, dataset: str, block_size: int) -> Iterator[pa.RecordBatch]:
    cols = datasets.csv_columns(market, dataset)
    kept = [c for c in cols if c.kept]
    read_options = pacsv.ReadOptions(column_names=[c.name for c in cols], use_threads=False,
                                      block_size=2 * block_size + (1 << 20))
    convert_options = pacsv.ConvertOptions(
        column_types={c.name: _read_type(c) for c in kept}, include_columns=[c.name for c in kept],
        true_values=["true", "True"], false_values=["false", "False"], strings_can_be_null=False,
        timestamp_parsers=["%Y-%m-%d %H:%M:%S", pacsv.ISO8601])
    try:
        with open_zip(zip_path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                raise BadSourceFile(f"expected one CSV in the zip, found {len(members)}")
            with archive.open(members[0]) as stream, ahead(csv_blocks(stream, block_size)) as blocks:
                first = True
                for block in blocks:
                    if first:
                        first = False
                        block = block.removeprefix(_BOM)
                        if _has_header(block):
                            block = block[block.find(b"\n") + 1:] if b"\n" in block else b""
                    if not block.strip():
                        continue
                    table = pacsv.read_csv(pa.py_buffer(block), read_options=read_options, convert_options=convert_options)
                    for batch in table.to_batches():
                        yield _convert(batch, kept)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise BadSourceFile(f"not a readable zip ({exc})") from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BadSourceFile(f"bad row ({exc})") from None


def _read_type(column: datasets.Column) -> pa.DataType:
    """How pyarrow reads the column: epoch times as int64 (unit decided per value), text times naive."""
    if column.text_time:
        return pa.timestamp(column.type.unit)
    return pa.int64() if column.is_time else column.type


def _convert(batch: pa.RecordBatch, cols: list[datasets.Column]) -> pa.RecordBatch:
    arrays = []
    for column, array in zip(cols, batch.columns):
        if column.text_time:  # naive UTC wall time: same values, tz attached
            array = array.cast(column.type)
        elif column.is_time:
            array = _epoch_as(array, column.type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([(c.name, c.type) for c in cols]))


def _epoch_as(array: pa.Array, unit_type: pa.TimestampType) -> pa.Array:
    """Epoch numbers, ms or µs per value, as `unit_type`. A block is nearly always in one unit:
    its min and max tell, and only a block that mixes them is converted value by value."""
    lowest, highest = (v.as_py() for v in pc.min_max(array).values())
    to_us = unit_type.unit == "us"
    if lowest is None or (lowest >= MICROSECOND_THRESHOLD if to_us else highest < MICROSECOND_THRESHOLD):
        pass  # already in the target unit (or all null)
    elif highest < MICROSECOND_THRESHOLD:  # all ms → µs
        array = pc.multiply(array, 1000)
    elif lowest >= MICROSECOND_THRESHOLD:  # all µs → ms
        array = pc.divide(array, 1000)
    else:
        micros = pc.greater_equal(array, MICROSECOND_THRESHOLD)
        array = (pc.if_else(micros, array, pc.multiply(array, 1000)) if to_us
                 else pc.if_else(micros, pc.divide(array, 1000), array))
    return array.cast(unit_type)


def parse_month(task: MonthTask) -> tuple[int, int]:
    """Write the partition of `task` (atomically), one row group per CSV block; (rows, bytes)."""
    target = Path(task.target)
    out_schema = schema(task.market, task.dataset).with_metadata({SOURCES_KEY: task.signature.encode()})
    rows = 0
    with parquet_writer(target, out_schema, compression=PARQUET_COMPRESSION, use_dictionary=False,
                        column_encoding=numeric_encodings(out_schema)) as writer:
        for source in task.sources:
            try:
                with ahead(_batches(Path(source), task.market, task.dataset, task.block_size)) as batches:
                    for batch in batches:
                        if batch.num_rows:
                            writer.write_batch(batch)
                            rows += batch.num_rows
            except BadSourceFile as exc:
                raise BadSourceFile(f"{source}: {exc}") from None
    return rows, target.stat().st_size
