"""`.CHECKSUM` files, the zip test (for downloads), and verification of one local zip.

Everything here is plain blocking code that holds no lock of its own: hashlib, zlib and file
reads release the GIL, so a thread pool of one thread per core verifies on every core.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bhds.storage import CHUNK_BYTES, open_zip, read_small, sha256_file

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class ChecksumFormatError(ValueError):
    """A `.CHECKSUM` file that does not start with a SHA-256 in hex."""


class BrokenZip(ValueError):
    """A zip that does not open or whose member fails its CRC."""


def parse_checksum(text: str | bytes) -> str:
    """The lower-case hex SHA-256 of `<sha256>  <file name>` (the name is optional)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    tokens = text.split()
    if not tokens or len(tokens) > 2 or not _HEX64.match(tokens[0]):
        raise ChecksumFormatError(f"not a SHA-256 checksum line: {text[:100]!r}")
    return tokens[0].lower()


def read_checksum(path: Path) -> str:
    """The expected SHA-256 stored in a `.CHECKSUM` file."""
    return parse_checksum(read_small(path, 4096))


def check_zip(path: Path | BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Open the zip (a path or a seekable file object) and read every member through its CRC
    check; return the member count.

    A checksum only says the bytes are the ones Binance published; this says they are a readable
    archive (published zips have been broken while their CHECKSUM matched).
    """
    try:
        with open_zip(path) as archive:
            members = archive.infolist()
            if not members:
                raise BrokenZip("the zip has no member")
            for member in members:
                # Reading to the end makes zipfile compare the member's CRC-32.
                with archive.open(member) as stream:
                    while stream.read(chunk_bytes):
                        pass
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        if isinstance(exc, BrokenZip):
            raise
        raise BrokenZip(f"broken zip ({exc})") from None
    return len(members)


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one zip against its expected SHA-256."""

    path: Path
    ok: bool
    sha256: str
    size: int
    reason: str = ""


def verify_zip(path: Path, expected_sha256: str) -> Verdict:
    """Hash `path` and compare with `expected_sha256`.

    A matching SHA-256 means these are exactly the bytes Binance published, so the zip is not
    inflated here: parse reads every member through its CRC anyway, and names and skips a zip
    that fails it. Verify therefore costs one read and one hash per file.
    """
    try:
        actual, size = sha256_file(path)
    except OSError as exc:
        return Verdict(path, False, "", 0, f"cannot read the zip ({exc.strerror or exc})")
    if actual != expected_sha256.lower():
        return Verdict(path, False, actual, size, f"checksum mismatch (expected {expected_sha256[:12]}…, got {actual[:12]}…)")
    return Verdict(path, True, actual, size)


def verify_with_checksum_file(path: Path, checksum: Path) -> Verdict:
    """Verify `path` against the hash in `checksum` (both local files)."""
    try:
        expected = read_checksum(checksum)
    except FileNotFoundError:
        return Verdict(path, False, "", 0, "CHECKSUM file is missing")
    except (OSError, ChecksumFormatError) as exc:
        return Verdict(path, False, "", 0, f"unreadable CHECKSUM file ({exc})")
    return verify_zip(path, expected)
