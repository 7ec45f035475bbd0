"""A walk over a tar archive's header blocks before ``tarfile`` reads it.

``tarfile`` reads a PAX or GNU long-name header whole into memory before anything can check it (a header that
declares 300 MiB costs 600 MiB), so bundle import first walks the 512-byte header blocks itself, the way tarfile
does (checksum, octal or base-256 sizes, a PAX ``size`` record applying to the next member), and refuses extended
headers over MAX_EXTENDED_HEADER. Standard library only.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from tursi.core.errors import BundleTooLarge, UnsafeBundle

MAX_EXTENDED_HEADER = 64 << 10  # bytes of one PAX or GNU long-name header


_EXTENDED = {
    b"x": "PAX header",
    b"X": "PAX header",
    b"g": "PAX global header",
    b"L": "GNU long name",
    b"K": "GNU long link name",
}


def _tar_number(field: bytes) -> int:
    """A ustar numeric field: octal text, or GNU base-256 (first byte 0x80) for large sizes."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise UnsafeBundle("the archive has a header with a malformed number") from None


def _header_ok(block: bytes) -> bool:
    """The ustar checksum, computed as tarfile does (unsigned or signed); a bad one ends the archive there."""
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    summed = block[:148] + b"        " + block[156:]
    return stored in (sum(summed), sum(b - 256 if b > 127 else b for b in summed))


def _pax_size(data: bytes) -> int | None:
    """The 'size' record of a PAX header (it overrides the next member's ustar size), else None."""
    size, pos = None, 0
    while pos < len(data) and data[pos : pos + 1] != b"\0":
        length_text, _, _ = data[pos : pos + 24].partition(b" ")
        length = int(length_text) if length_text.isdigit() else 0
        record = data[pos : pos + length]
        if length <= len(length_text) + 1 or not record.endswith(b"\n") or b"=" not in record:
            raise UnsafeBundle("the archive has a malformed PAX header")
        key, _, value = record[len(length_text) + 1 : -1].partition(b"=")
        if key == b"size":
            if not value.isdigit():
                raise UnsafeBundle("the archive has a malformed PAX size")
            size = int(value)
        pos += length
    return size


def _skip_data(kind: bytes, size: int) -> int:
    """Bytes of member data after a header, as tarfile counts them (none for links, folders and devices)."""
    if kind == tarfile.GNUTYPE_SPARSE:
        raise UnsafeBundle("the archive holds a sparse member: bundles hold regular files only")
    if kind in tarfile.REGULAR_TYPES or kind in _EXTENDED or kind not in tarfile.SUPPORTED_TYPES:
        return size + (-size % tarfile.BLOCKSIZE)
    return 0


def scan_headers(path: Path, max_headers: int) -> None:
    """Walk the archive's header blocks before tarfile sees them: tarfile reads a PAX or GNU long-name header
    whole into memory (a header declaring 300 MiB costs 600 MiB), so each is refused over MAX_EXTENDED_HEADER.
    Stops where tarfile would (a zero, short or invalid block); everything else is left to verify()."""
    offset, count, pending = 0, 0, None
    with path.open("rb") as fh:
        while True:
            fh.seek(offset)
            block = fh.read(tarfile.BLOCKSIZE)
            if len(block) < tarfile.BLOCKSIZE or not _header_ok(block):
                return
            count += 1
            if count > max_headers:
                raise BundleTooLarge(f"the archive has more than {max_headers} headers")
            kind, size = block[156:157], _tar_number(block[124:136])
            if kind in _EXTENDED:
                if size > MAX_EXTENDED_HEADER:
                    raise UnsafeBundle(f"a {_EXTENDED[kind]} of {size} bytes (the cap is {MAX_EXTENDED_HEADER})")
                if kind in (b"x", b"X", b"g"):
                    pax = _pax_size(fh.read(size))
                    if pax is not None and kind == b"g":
                        raise UnsafeBundle("a PAX global header may not set sizes")
                    pending = pax if pax is not None else pending
            elif pending is not None:
                size, pending = pending, None
            offset += tarfile.BLOCKSIZE + _skip_data(kind, size)
