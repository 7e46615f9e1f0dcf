"""Open one archive zip and hand back its CSV bytes, header row removed.

Binance zips hold exactly one CSV. Whether it starts with a header row varies per file (spot
never, futures usually), so the header is detected from the content of each file.
"""

from __future__ import annotations

import zipfile
import zlib

from bhds.storage import open_zip


class BadSourceFile(Exception):
    """A zip or its CSV cannot be used; the message says why (the caller adds the file name)."""


_BOM = b"\xef\xbb\xbf"


def read_member(zip_bytes: bytes) -> bytes:
    """The bytes of the zip's only CSV member."""
    try:
        with open_zip(zip_bytes) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                found = ", ".join(info.filename for info in members) or "none"
                raise BadSourceFile(f"expected one CSV in the zip, found {len(members)} ({found})")
            return archive.read(members[0])
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise BadSourceFile(f"not a readable zip ({exc})") from None


def strip_header(csv: bytes) -> bytes:
    """`csv` without a leading header row and BOM; a row whose first field is not a number is a header."""
    if csv.startswith(_BOM):
        csv = csv[len(_BOM):]
    first_end = csv.find(b"\n")
    first_line = csv if first_end < 0 else csv[:first_end]
    first_field = first_line.split(b",", 1)[0].strip().strip(b'"')
    if first_field and not first_field.isdigit():
        return b"" if first_end < 0 else csv[first_end + 1:]
    return csv


def csv_body(zip_bytes: bytes) -> bytes:
    """Header-less CSV rows of a zip, ending with a newline; raise BadSourceFile when there are none."""
    body = strip_header(read_member(zip_bytes))
    if not body.strip():
        raise BadSourceFile("the CSV has no data rows")
    if not body.endswith(b"\n"):
        body += b"\n"
    return body
