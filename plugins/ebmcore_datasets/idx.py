"""Read and write the IDX format of the MNIST-style image and label files.

An IDX file is a header followed by the raw array, all big-endian:

* two zero bytes;
* one byte giving the element type: ``0x08`` unsigned byte, ``0x09`` signed byte,
  ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64;
* one byte giving the number of dimensions ``d``;
* ``d`` unsigned 32-bit sizes;
* the elements in C (row-major) order.

:func:`read_idx` also reads gzip-compressed files (recognised by their content, so a ``.gz``
name is not required), and rejects corrupt input with a :class:`ValueError` that names the
file and says what is wrong. :func:`write_idx` writes the same format; the tests use it to
build small data sets, and it is handy for exporting arrays to tools that read IDX.
"""

from __future__ import annotations

import gzip
import os
import struct
import sys
import zlib
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["DTYPE_CODES", "read_idx", "write_idx"]

#: The element types of the format: type code -> torch dtype.
DTYPE_CODES: dict[int, torch.dtype] = {
    0x08: torch.uint8,
    0x09: torch.int8,
    0x0B: torch.int16,
    0x0C: torch.int32,
    0x0D: torch.float32,
    0x0E: torch.float64,
}
_CODES_BY_DTYPE = {dtype: code for code, dtype in DTYPE_CODES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_SIZE = 2**32 - 1
_CHUNK = 1 << 24


def _read_exactly(stream: IO[bytes], buffer: memoryview) -> int:
    """Fill ``buffer`` from ``stream``; return how many bytes arrived before end of file.

    ``readinto`` may return short counts, so it loops until the buffer is full or the
    stream is exhausted.
    """
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(buffer[filled:])
        if not got:
            break
        filled += got
    return filled


def _parse(stream: IO[bytes], name: str, size: int | None) -> torch.Tensor:
    """Read one IDX array from ``stream``.

    Args:
        stream: The (decompressed) byte stream, positioned at the start.
        name: The file named in error messages.
        size: The stream's total length when known (plain files), else ``None``.
    """
    head = stream.read(4)
    if len(head) < 4:
        raise ValueError(f"{name}: truncated IDX header: the file holds {len(head)} byte(s), "
                         f"an IDX file starts with a 4-byte magic number")
    if head[:2] != b"\x00\x00":
        raise ValueError(f"{name}: bad IDX magic number {head.hex()}: the first two bytes must "
                         f"be zero (is this an IDX file?)")
    code, ndim = head[2], head[3]
    if code not in DTYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPE_CODES)
        raise ValueError(f"{name}: unknown IDX element type code 0x{code:02X} "
                         f"(known codes: {known})")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{name}: truncated IDX header: {ndim} dimension size(s) need "
                         f"{4 * ndim} bytes after the magic number, found {len(dims)}")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = DTYPE_CODES[code]
    itemsize = torch.empty((), dtype=dtype).element_size()
    count = 1
    for dim in shape:
        count *= dim
    nbytes = count * itemsize

    truncated = (f"{name}: truncated IDX data: shape {shape} of {dtype} needs {nbytes} "
                 f"bytes after the header, found {{}}")
    trailing = (f"{name}: trailing bytes after the IDX data of shape {shape} "
                f"({nbytes} data bytes expected, found {{}})")
    if size is not None:
        # A plain file: compare sizes first, so a corrupt header that claims a huge array
        # fails here instead of allocating it.
        available = size - 4 - 4 * ndim
        if available != nbytes:
            raise ValueError((truncated if available < nbytes else trailing).format(available))
        buffer = bytearray(nbytes)
        filled = _read_exactly(stream, memoryview(buffer))
        if filled < nbytes:  # the file shrank while being read
            raise ValueError(truncated.format(filled))
    else:
        # A gzip stream has no cheap length: read in chunks, so memory grows with the data
        # actually present rather than with what a corrupt header claims.
        buffer = bytearray()
        while len(buffer) < nbytes:
            chunk = stream.read(min(nbytes - len(buffer), _CHUNK))
            if not chunk:
                break
            buffer += chunk
        if len(buffer) < nbytes:
            raise ValueError(truncated.format(len(buffer)))
        if stream.read(1):
            extra = 1 + len(stream.read())
            raise ValueError(trailing.format(nbytes + extra))
    if nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(buffer, dtype=torch.uint8)
    if itemsize > 1 and sys.byteorder == "little":
        raw = raw.view(-1, itemsize).flip(-1).contiguous()  # big-endian -> native order
    return raw.view(dtype).reshape(shape)


def _check_path(path: Any) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` after checking its type."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an IDX file (plain or gzip-compressed) into a tensor.

    Args:
        path: The file to read. Gzip compression is detected from the content.

    Returns:
        A CPU tensor of the stored shape whose dtype matches the type code: ``uint8``,
        ``int8``, ``int16``, ``int32``, ``float32`` or ``float64``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not valid IDX: bad magic number, unknown type code,
            truncated header or data, trailing bytes, or a corrupt gzip stream. The message
            names the file.
    """
    path = _check_path(path)
    name = str(path)
    with open(path, "rb") as plain:
        compressed = plain.read(2) == _GZIP_MAGIC
        plain.seek(0)
        if not compressed:
            return _parse(plain, name, os.fstat(plain.fileno()).st_size)
        try:
            with gzip.GzipFile(fileobj=plain, mode="rb") as stream:
                return _parse(stream, name, None)
        except (OSError, EOFError, zlib.error) as err:
            # gzip signals corruption with BadGzipFile (an OSError), EOFError or zlib.error
            raise ValueError(f"{name}: corrupt gzip data: {err}") from err


def write_idx(path: str | os.PathLike[str], tensor: torch.Tensor, *,
              compress: bool | None = None) -> Path:
    """Write ``tensor`` to ``path`` in the IDX format.

    Args:
        path: The file to write (parent folders must exist).
        tensor: The array; its dtype must be one of ``uint8``, ``int8``, ``int16``,
            ``int32``, ``float32`` or ``float64``, with at most 255 dimensions of fewer
            than 2**32 elements each.
        compress: Whether to gzip the file; ``None`` compresses when the name ends in
            ``.gz``.

    Returns:
        The path written.
    """
    path = _check_path(path)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in _CODES_BY_DTYPE:
        known = ", ".join(str(d).removeprefix("torch.") for d in _CODES_BY_DTYPE)
        raise TypeError(f"tensor has dtype {tensor.dtype}, which IDX cannot store "
                        f"(supported: {known})")
    if tensor.ndim > 255:
        raise ValueError(f"IDX stores at most 255 dimensions, tensor has {tensor.ndim}")
    if any(size > _MAX_SIZE for size in tensor.shape):
        raise ValueError(f"IDX dimension sizes must be below 2**32, got shape "
                         f"{tuple(tensor.shape)}")
    if compress is None:
        compress = path.name.endswith(".gz")
    elif not isinstance(compress, bool):
        raise TypeError(f"compress must be a bool or None, got {type(compress).__name__}")

    header = bytes((0, 0, _CODES_BY_DTYPE[tensor.dtype], tensor.ndim))
    header += struct.pack(f">{tensor.ndim}I", *tensor.shape)
    raw = tensor.detach().cpu().reshape(-1).clone().view(torch.uint8)
    if tensor.element_size() > 1 and sys.byteorder == "little":
        raw = raw.view(-1, tensor.element_size()).flip(-1).contiguous()  # -> big-endian
    # clone/contiguous give a fresh storage holding exactly the data, in order
    data = bytes(raw.untyped_storage()) if raw.numel() else b""

    if compress:
        # no file name and mtime=0 in the gzip header: the output is byte-for-byte
        # reproducible; level 6 (zlib's default) is much faster than gzip's 9 for little loss
        with open(path, "wb") as plain, gzip.GzipFile(filename="", fileobj=plain, mode="wb",
                                                      compresslevel=6, mtime=0) as out:
            out.write(header + data)
    else:
        with open(path, "wb") as out:
            out.write(header + data)
    return path
