"""The IDX reader and writer: round trips, byte layout, gzip and corrupt input."""

from __future__ import annotations

import gzip
import re
import struct

import pytest
import torch
from ebmcore_datasets.idx import DTYPE_CODES, read_idx, write_idx

EXTREMES = {
    torch.uint8: [0, 1, 127, 128, 255],
    torch.int8: [-128, -1, 0, 1, 127],
    torch.int16: [-32768, -2, 0, 258, 32767],
    torch.int32: [-(2**31), -70000, 0, 65539, 2**31 - 1],
    torch.float32: [-1.5, 0.0, 3.25e-38, 1e30, float("inf")],
    torch.float64: [-1e300, -0.0, 5e-324, 0.1, float("-inf")],
}


def _grid(dtype: torch.dtype) -> torch.Tensor:
    """A (2, 3, 5) array of ``dtype`` holding the type's extremes in every row."""
    row = torch.tensor(EXTREMES[dtype], dtype=dtype)
    return torch.stack([torch.stack([row.roll(i + j) for j in range(3)]) for i in range(2)])


@pytest.mark.parametrize("dtype", list(EXTREMES), ids=str)
@pytest.mark.parametrize("name", ["array-idx3", "array-idx3.gz"])
def test_round_trip_of_every_dtype(tmp_path, dtype, name):
    t = _grid(dtype)
    path = write_idx(tmp_path / name, t)
    back = read_idx(path)
    assert back.dtype == dtype and back.shape == (2, 3, 5)
    assert torch.equal(back, t)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")


def test_every_dtype_code_is_covered():
    assert set(DTYPE_CODES) == {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E}
    assert set(DTYPE_CODES.values()) == set(EXTREMES)


def test_writer_produces_the_documented_big_endian_layout(tmp_path):
    path = write_idx(tmp_path / "a", torch.tensor([[258, -2, 1]], dtype=torch.int16))
    assert path.read_bytes() == (b"\x00\x00\x0b\x02" + struct.pack(">II", 1, 3)
                                 + b"\x01\x02\xff\xfe\x00\x01")


def test_reader_decodes_hand_written_bytes(tmp_path):
    # independent of the writer: a big-endian int32 vector and a float64 scalar grid
    (tmp_path / "i32").write_bytes(b"\x00\x00\x0c\x01" + struct.pack(">I", 2)
                                   + struct.pack(">ii", 16909060, -5))
    assert read_idx(tmp_path / "i32").tolist() == [16909060, -5]
    (tmp_path / "f64").write_bytes(b"\x00\x00\x0e\x02" + struct.pack(">II", 1, 2)
                                   + struct.pack(">dd", 0.1, -2.5))
    back = read_idx(str(tmp_path / "f64"))
    assert back.dtype == torch.float64 and back.tolist() == [[0.1, -2.5]]


def test_mnist_style_images_and_labels(tmp_path):
    images = torch.randint(256, (4, 28, 28), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    header = b"\x00\x00\x08\x03" + struct.pack(">III", 4, 28, 28)
    assert write_idx(tmp_path / "img", images).read_bytes()[:16] == header
    assert torch.equal(read_idx(tmp_path / "img"), images)
    labels = torch.tensor([7, 2, 1, 0], dtype=torch.uint8)
    assert write_idx(tmp_path / "lab", labels).read_bytes() == (
        b"\x00\x00\x08\x01" + struct.pack(">I", 4) + bytes([7, 2, 1, 0]))


def test_gzip_is_detected_from_the_content_not_the_name(tmp_path):
    t = torch.arange(12, dtype=torch.int32).reshape(3, 4)
    write_idx(tmp_path / "plain", t)
    (tmp_path / "packed").write_bytes(gzip.compress((tmp_path / "plain").read_bytes()))
    assert torch.equal(read_idx(tmp_path / "packed"), t)
    write_idx(tmp_path / "forced", t, compress=True)
    assert torch.equal(read_idx(tmp_path / "forced"), t)
    write_idx(tmp_path / "not.gz", t, compress=False)
    assert (tmp_path / "not.gz").read_bytes() == (tmp_path / "plain").read_bytes()


def test_gzip_output_is_reproducible(tmp_path):
    t = torch.arange(100, dtype=torch.uint8)
    assert (write_idx(tmp_path / "a.gz", t).read_bytes()
            == write_idx(tmp_path / "b.gz", t).read_bytes())


def test_non_contiguous_empty_and_scalar_tensors(tmp_path):
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).T
    assert torch.equal(read_idx(write_idx(tmp_path / "t", t)), t)
    empty = torch.empty(0, 3, dtype=torch.int16)
    back = read_idx(write_idx(tmp_path / "e", empty))
    assert back.shape == (0, 3) and back.dtype == torch.int16
    scalar = torch.tensor(-7, dtype=torch.int8)
    assert torch.equal(read_idx(write_idx(tmp_path / "s", scalar)), scalar)


def test_read_tensor_is_writable_and_independent(tmp_path):
    path = write_idx(tmp_path / "a", torch.zeros(3, dtype=torch.uint8))
    first = read_idx(path)
    first += 1
    assert read_idx(path).tolist() == [0, 0, 0]


VALID = b"\x00\x00\x0b\x01" + struct.pack(">I", 3) + struct.pack(">hhh", 1, 2, 3)

CORRUPT = {
    "empty": (b"", "truncated IDX header"),
    "short magic": (b"\x00\x00\x08", "truncated IDX header"),
    "bad magic": (b"\x01\x00" + VALID[2:], "bad IDX magic"),
    "bad magic 2": (b"\x00\x07" + VALID[2:], "bad IDX magic"),
    "unknown dtype": (b"\x00\x00\x0a" + VALID[3:], "unknown IDX element type code 0x0A"),
    "truncated dims": (VALID[:6], "truncated IDX header"),
    "truncated data": (VALID[:-1], "truncated IDX data"),
    "no data": (VALID[:8], "truncated IDX data"),
    "trailing bytes": (VALID + b"\x00", "trailing bytes"),
    "huge claimed size": (b"\x00\x00\x0e\x02" + struct.pack(">II", 2**32 - 1, 2**32 - 1),
                          "truncated IDX data"),
}


def test_valid_fixture_reads():
    # guards the corruption cases below: they are all edits of this valid file
    assert VALID[2] == 0x0B


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_input_raises_value_error_naming_the_file(tmp_path, case, compressed):
    data, message = CORRUPT[case]
    path = tmp_path / f"corrupt-{case.replace(' ', '-')}{'.gz' if compressed else ''}"
    path.write_bytes(gzip.compress(data) if compressed else data)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_the_valid_file_reads_in_both_forms(tmp_path):
    (tmp_path / "v").write_bytes(VALID)
    (tmp_path / "v.gz").write_bytes(gzip.compress(VALID))
    assert read_idx(tmp_path / "v").tolist() == [1, 2, 3]
    assert read_idx(tmp_path / "v.gz").tolist() == [1, 2, 3]


def test_corrupt_gzip_stream_raises_value_error_naming_the_file(tmp_path):
    packed = gzip.compress(VALID * 50)
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="corrupt gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    bad = tmp_path / "bad-crc.gz"
    bad.write_bytes(packed[:-8] + b"\x00" * 8)  # wrong CRC and length in the trailer
    with pytest.raises(ValueError, match="corrupt gzip") as err:
        read_idx(bad)
    assert str(bad) in str(err.value)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent")
    with pytest.raises(TypeError, match="path"):
        read_idx(3)
    with pytest.raises(TypeError, match="tensor must be a torch.Tensor"):
        write_idx(tmp_path / "x", [1, 2])
    for dtype in (torch.int64, torch.bool, torch.float16):
        with pytest.raises(TypeError, match="cannot store"):
            write_idx(tmp_path / "x", torch.zeros(2, dtype=dtype))
    with pytest.raises(TypeError, match="compress"):
        write_idx(tmp_path / "x", torch.zeros(2, dtype=torch.uint8), compress="yes")
