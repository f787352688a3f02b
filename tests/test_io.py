"""annlib.io: the index file format — round trips, the documented layout, corruption, atomic saves."""

from __future__ import annotations

import base64
import builtins
import contextlib
import json
import mmap
import struct
import zlib

import numpy as np
import pytest

import annlib
import annlib.io as aio
from annlib.errors import AnnlibError, FormatError

ALL_DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]
SHAPES = [(), (0,), (1,), (7,), (3, 5), (0, 4), (4, 0), (2, 3, 4), (3, 0, 2)]
CONFIG = {
    "metric": "dot",
    "num_leaves": 1000,
    "threshold": 0.2,
    "tiny": 5e-324,
    "big": 2**70,
    "negative": -3,
    "flag": False,
    "nothing": None,
    "text": "naïve π ✓",
    "nested": {"list": [1, 2.5, "x", None, [True]], "empty": {}},
    "empty_list": [],
}

# A small file written by format version 1 (zlib-compressed, base64). Every later annlib
# must keep loading it; if the format changes, add a fixture for the new version beside it.
FIXTURE_V1 = (
    "eNqlkktOwzAQhl3gALDhAF5HlV8JSYR47FEvgCrkJg5EzQMlTkVVInXFmgUHYM8l2LLiBJwFplDS6QYQ/ZWJMxr7m8mMTweD"
    "sx4h5H6LfGpGx2kR05Am6Y1tKkMdqosiS0cXE1PVaVlAiPV5n0EgKoskvaThjObGVmkEobi0ECia/CIzemJqGgqH1pHODA1Z"
    "34WQzuGTvs5hm9WXsOGcauoUTZY5tmrMsIX9JrKQaRGbfR9I4xpOxHZ6vfAOUx+8+kovvHN36NAySWpjaXjAFCQZTe0it2JQ"
    "ZBVJQUPpM8WkUtxvnQ46gURltQZOFAILR2K056/QQnVoJaQQyuMCkaMyNph72/A1rkBcXwpUcoflSni+HzCXI26u6zHGjjAW"
    "F+sH3goqO6iQ7IB7krkBgl7pLFnrgUBQxAw8hhqwYnI3cOH/Aw8xTX5tp2sTw41ljkJczgQa2mpmrB22Dy9vd+QHvS/17feW"
    "6/I6k23ym+bH8DqBB2wO9gj2fEL+qve9bbKBel3F/9TRZsd3d77W/adJezYYnH4Ay+/Xnw=="
)


def _values(rng: np.random.Generator, dtype: str, shape: tuple) -> np.ndarray:
    """Random values that include each dtype's extremes (and NaN/inf for floats)."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return np.asarray(rng.random(shape) < 0.5)
    if dt.kind == "f":
        out = np.asarray(rng.standard_normal(shape), dtype=dt)
        special = np.array([np.nan, np.inf, -np.inf, np.finfo(dt).max, np.finfo(dt).tiny, -0.0], dtype=dt)
    else:
        info = np.iinfo(dt)
        out = np.asarray(rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True))
        special = np.array([info.min, info.max, 0], dtype=dt)
    flat = out.reshape(-1)
    flat[: min(flat.size, special.size)] = special[: flat.size]
    return out


def _assert_identical(loaded: np.ndarray, original: np.ndarray) -> None:
    assert loaded.shape == original.shape
    assert loaded.dtype == original.dtype.newbyteorder("<")
    # Compare bytes so NaN payloads and -0.0 count too.
    expected = np.ascontiguousarray(original.astype(original.dtype.newbyteorder("<")))
    assert loaded.tobytes() == expected.tobytes()


def _mixed_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "vectors": rng.standard_normal((37, 5)).astype(np.float32),
        "ids": np.arange(37, dtype=np.int64),
        "codes": rng.integers(0, 256, size=(37, 3), dtype=np.uint8),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "scale": np.array(0.5, dtype=np.float64),
        "mask": rng.random(11) < 0.5,
    }


@pytest.fixture
def index_path(tmp_path, rng):
    """A saved file with several sections (some needing padding, one empty) and its contents."""
    path = tmp_path / "index.annl"
    arrays = _mixed_arrays(rng)
    aio.save_index_file(path, "test_kind", CONFIG, arrays)
    return path, arrays


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("mmap_", [True, False], ids=["mmap", "memory"])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_round_trip_every_dtype_and_shape(tmp_path, rng, dtype, mmap_):
    arrays = {f"a{i}": _values(rng, dtype, shape) for i, shape in enumerate(SHAPES)}
    path = tmp_path / "x.annl"
    aio.save_index_file(path, "kind", {}, arrays)
    kind, config, loaded = aio.load_index_file(path, mmap=mmap_)
    assert (kind, config) == ("kind", {})
    assert list(loaded) == list(arrays)
    for name, original in arrays.items():
        _assert_identical(loaded[name], original)


def test_config_round_trip(tmp_path):
    path = tmp_path / "x.annl"
    aio.save_index_file(path, "kind", CONFIG, {})
    kind, config, arrays = aio.load_index_file(path)
    assert (kind, config, arrays) == ("kind", CONFIG, {})
    assert list(config) == list(CONFIG)  # key order kept
    assert config["tiny"] == 5e-324 and config["big"] == 2**70  # exact, not approximately


def test_tuples_in_config_come_back_as_lists(tmp_path):
    path = tmp_path / "x.annl"
    aio.save_index_file(path, "kind", {"dims": (1, 2), "nested": [(3,)]}, {})
    assert aio.load_index_file(path)[1] == {"dims": [1, 2], "nested": [[3]]}


def test_load_twice_gives_identical_results(index_path):
    path, arrays = index_path
    first = aio.load_index_file(path)
    second = aio.load_index_file(path, mmap=False)
    assert first[:2] == second[:2] == ("test_kind", CONFIG)
    for name, original in arrays.items():
        _assert_identical(first[2][name], original)
        _assert_identical(second[2][name], original)


def test_big_endian_and_non_contiguous_input_is_stored_little_endian_c_order(tmp_path, rng):
    base = rng.standard_normal((6, 8))
    arrays = {
        "big_endian": base.astype(">f4"),
        "strided": base[::2, ::3],
        "fortran": np.asfortranarray(base),
        "big_endian_int": np.arange(10, dtype=">u2"),
    }
    path = tmp_path / "x.annl"
    aio.save_index_file(path, "kind", {}, arrays)
    _, _, loaded = aio.load_index_file(path)
    for name, original in arrays.items():
        assert loaded[name].dtype.byteorder in ("<", "=", "|")
        assert loaded[name].flags.c_contiguous
        np.testing.assert_array_equal(loaded[name], original)
    assert loaded["big_endian"].dtype == np.dtype("<f4")


def test_mmap_arrays_are_read_only_views_of_a_memory_map(index_path):
    path, _ = index_path
    _, _, arrays = aio.load_index_file(path, mmap=True)
    for name, array in arrays.items():
        assert not array.flags.writeable, name
        if array.size:
            owner = array
            while isinstance(owner, np.ndarray):
                owner = owner.base
            if isinstance(owner, memoryview):
                owner = owner.obj
            assert isinstance(owner, (mmap.mmap, np.memmap)), name
            assert array.ctypes.data % aio.ALIGNMENT == 0, name  # 64-byte aligned in memory
    with pytest.raises(ValueError, match="read-only"):
        arrays["vectors"][0, 0] = 1.0


def test_mmap_false_returns_writable_in_memory_arrays(index_path):
    path, _ = index_path
    _, _, arrays = aio.load_index_file(path, mmap=False)
    for array in arrays.values():
        assert array.flags.writeable and array.flags.owndata
    arrays["vectors"][0, 0] = 1.0


def test_mapped_arrays_survive_the_file_being_replaced(index_path, rng):
    path, arrays = index_path
    _, _, old = aio.load_index_file(path, mmap=True)
    aio.save_index_file(path, "other", {}, {"vectors": np.zeros((2, 2), np.float32)})
    _assert_identical(old["vectors"], arrays["vectors"])
    assert aio.load_index_file(path)[0] == "other"


def test_path_may_be_str_or_pathlike(tmp_path):
    aio.save_index_file(str(tmp_path / "a.annl"), "kind", {}, {"x": np.arange(3)})
    assert aio.load_index_file(tmp_path / "a.annl")[2]["x"].tolist() == [0, 1, 2]


def test_format_v1_fixture_still_loads(tmp_path):
    path = tmp_path / "v1.annl"
    path.write_bytes(zlib.decompress(base64.b64decode(FIXTURE_V1)))
    for mmap_ in (True, False):
        kind, config, arrays = aio.load_index_file(path, mmap=mmap_)
        assert kind == "fixture"
        assert config == {"metric": "dot", "num_leaves": 2, "scale": 0.5, "name": "π", "tags": ["a", None, True]}
        assert list(arrays) == ["ids", "vectors", "codes", "mask", "half", "empty"]
        np.testing.assert_array_equal(arrays["ids"], np.arange(-1, 4, dtype=np.int64))
        np.testing.assert_array_equal(arrays["vectors"], [[1, 2, 3], [4, 5, 6]])
        assert arrays["vectors"].dtype == np.float32
        np.testing.assert_array_equal(arrays["codes"], np.array([[0, 255], [17, 3]], dtype=np.uint8))
        np.testing.assert_array_equal(arrays["mask"], [True, False, True])
        assert arrays["half"].shape == () and arrays["half"].dtype == np.float16 and arrays["half"] == 1.5
        assert arrays["empty"].shape == (0, 4) and arrays["empty"].dtype == np.int32
    header = aio.read_header(path)
    assert header["format_version"] == 1 and header["annlib_version"] == "0.1.0"


# --------------------------------------------------------------------------- the documented layout


def test_file_layout_matches_the_documented_format(index_path):
    """Parse a file with struct, json and zlib alone, following the module docstring."""
    path, arrays = index_path
    data = path.read_bytes()
    magic, version, header_len = struct.unpack_from("<4sIQ", data, 0)
    assert magic == b"ANNL"
    assert version == aio.FORMAT_VERSION == 3
    header_bytes = data[16 : 16 + header_len]
    (header_crc,) = struct.unpack_from("<I", data, 16 + header_len)
    assert header_crc == zlib.crc32(data[: 16 + header_len])
    header = json.loads(header_bytes.decode("utf-8"))
    assert set(header) == {"kind", "annlib_version", "config", "sections"}
    assert header["kind"] == "test_kind" and header["config"] == CONFIG
    assert header["annlib_version"] == annlib.__version__

    position = 16 + header_len + 4
    for section, (name, original) in zip(header["sections"], arrays.items()):
        assert section["name"] == name
        assert section["dtype"] == original.dtype.newbyteorder("<").str
        assert tuple(section["shape"]) == original.shape
        assert section["offset"] % 64 == 0 and 0 <= section["offset"] - position < 64
        assert data[position : section["offset"]] == bytes(section["offset"] - position)  # zero fill
        raw = data[section["offset"] : section["offset"] + section["nbytes"]]
        assert raw == original.tobytes()
        assert section["crc32"] == zlib.crc32(raw)
        position = section["offset"] + section["nbytes"]

    total, checksum, trailer_magic = struct.unpack("<QI4s", data[position:])
    assert (total, trailer_magic) == (len(data), b"LNNA")
    crcs = [header_crc] + [s["crc32"] for s in header["sections"]]
    assert checksum == zlib.crc32(struct.pack(f"<{len(crcs)}I", *crcs))


def test_read_header_describes_the_file(index_path):
    path, arrays = index_path
    header = aio.read_header(path)
    assert header["kind"] == "test_kind"
    assert header["format_version"] == aio.FORMAT_VERSION
    assert header["config"] == CONFIG
    assert header["file_size"] == path.stat().st_size
    assert header["sections"] == [
        {"name": name, "dtype": a.dtype.name, "shape": a.shape, "nbytes": a.nbytes} for name, a in arrays.items()
    ]


def test_read_header_does_not_read_array_data(tmp_path, monkeypatch):
    path = tmp_path / "big.annl"
    aio.save_index_file(path, "kind", {"n": 1}, {"data": np.ones(1 << 20, dtype=np.uint8)})
    # Corrupt the data: read_header must not notice, because it never looks at it.
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))

    bytes_read = []

    class CountingFile:
        def __init__(self, file):
            self._file = file

        def read(self, n=-1):
            data = self._file.read(n)
            bytes_read.append(len(data))
            return data

        def readinto(self, buffer):
            n = self._file.readinto(buffer)
            bytes_read.append(n)
            return n

        def __getattr__(self, name):
            return getattr(self._file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._file.close()

    def counting_open(*args, **kwargs):
        return CountingFile(builtins.open(*args, **kwargs))

    monkeypatch.setattr(aio, "open", counting_open, raising=False)
    header = aio.read_header(path)
    assert header["sections"][0]["shape"] == (1 << 20,)
    assert 0 < sum(bytes_read) < 4096
    monkeypatch.undo()
    with pytest.raises(FormatError, match="'data' checksum mismatch"):
        aio.load_index_file(path)


# --------------------------------------------------------------------------- corruption


def _load_all_ways(path) -> None:
    """Each way of reading must refuse the file; returns only if every one raised FormatError."""
    for mmap_ in (True, False):
        with pytest.raises(FormatError, match=str(path.name)):
            aio.load_index_file(path, mmap=mmap_, verify=True)


def test_truncation_is_detected_at_every_twentieth_and_one_byte_short(index_path, tmp_path):
    path, _ = index_path
    data = path.read_bytes()
    cuts = sorted({len(data) * i // 20 for i in range(20)} | {len(data) - 1, 1, 3, 15, 17})
    broken = tmp_path / "broken.annl"
    for cut in cuts:
        broken.write_bytes(data[:cut])
        _load_all_ways(broken)
        with pytest.raises(FormatError):
            aio.load_index_file(broken, verify=False)
        with pytest.raises(FormatError):
            aio.read_header(broken)


def test_truncation_is_detected_at_every_byte_of_a_small_file(tmp_path):
    path = tmp_path / "small.annl"
    aio.save_index_file(path, "k", {"a": 1}, {"x": np.arange(5, dtype=np.int16), "y": np.ones((2, 2))})
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(FormatError, match="small.annl"):
            aio.load_index_file(path, verify=False)


def test_appended_bytes_are_detected(index_path):
    path, _ = index_path
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(FormatError, match="unexpected bytes"):
        aio.load_index_file(path)


def test_every_single_bit_flip_of_a_small_file_is_detected(tmp_path):
    path = tmp_path / "small.annl"
    arrays = {
        "x": np.arange(5, dtype=np.int16),
        "y": np.ones((2, 3), np.float32),
        "z": np.zeros(0),
        "b": np.ones(3, bool),
    }
    aio.save_index_file(path, "k", {"a": [1, 2]}, arrays)
    data = path.read_bytes()
    broken = tmp_path / "broken.annl"
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= 1 << (position % 8)
        broken.write_bytes(bytes(flipped))
        _load_all_ways(broken)


def test_bit_flips_in_header_data_padding_and_trailer_are_detected(index_path, tmp_path, rng):
    path, _ = index_path
    data = path.read_bytes()
    header = aio.read_header(path)
    (header_len,) = struct.unpack_from("<Q", data, 8)
    sections = json.loads(data[16 : 16 + header_len])["sections"]
    regions = {
        "preamble": (0, 16),
        "header": (16, 16 + header_len),
        "header crc": (16 + header_len, 20 + header_len),
        "padding": (20 + header_len, sections[0]["offset"]),
        "trailer": (len(data) - 16, len(data)),
    }
    for s in sections:
        if s["nbytes"]:
            regions[f"section {s['name']}"] = (s["offset"], s["offset"] + s["nbytes"])
    assert header["file_size"] == len(data)
    broken = tmp_path / "broken.annl"
    for start, stop in regions.values():
        for position in {start, stop - 1, *rng.integers(start, stop, size=4).tolist()}:
            flipped = bytearray(data)
            flipped[position] ^= 1 << int(rng.integers(8))
            broken.write_bytes(bytes(flipped))
            _load_all_ways(broken)


def test_verify_false_skips_the_data_checksums(index_path):
    path, arrays = index_path
    data = bytearray(path.read_bytes())
    header = aio.read_header(path)
    assert header["sections"][0]["name"] == "vectors"
    (header_len,) = struct.unpack_from("<Q", data, 8)
    offset = json.loads(data[16 : 16 + header_len])["sections"][0]["offset"]
    data[offset] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="'vectors' checksum mismatch"):
        aio.load_index_file(path)
    _, _, loaded = aio.load_index_file(path, verify=False)  # structure is still checked, data is not
    assert loaded["vectors"].tobytes() != arrays["vectors"].tobytes()


@pytest.mark.parametrize(
    "content",
    [b"", b"AN", b"XNNL" + bytes(60), b"\x89HDF\r\n\x1a\n" + bytes(100), b"{}\n", b"annl" + bytes(40)],
    ids=["empty", "short", "one-letter-off", "hdf5", "json", "lower-case"],
)
def test_wrong_magic_is_not_an_annlib_file(tmp_path, content):
    path = tmp_path / "other.bin"
    path.write_bytes(content)
    expected = "not an annlib index file" if content[:2] != b"AN" else "not an annlib index file|truncated"
    with pytest.raises(FormatError, match=expected):
        aio.load_index_file(path)
    with pytest.raises(FormatError, match=expected):
        aio.read_header(path)


@pytest.mark.parametrize("version", [4, 7, 2**32 - 1])
def test_newer_format_version_says_upgrade(index_path, version):
    path, _ = index_path
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 4, version)
    path.write_bytes(bytes(data))
    message = rf"written by a newer annlib \(format version {version}\); this annlib reads up to 3, upgrade annlib"
    with pytest.raises(FormatError, match=message):
        aio.load_index_file(path)
    with pytest.raises(FormatError, match=message):
        aio.read_header(path)


def test_newer_format_version_is_reported_whatever_follows(tmp_path):
    # A newer format may change everything after the 16-byte preamble.
    path = tmp_path / "future.annl"
    path.write_bytes(struct.pack("<4sIQ", b"ANNL", 4, 10**12) + b"whatever a future annlib writes")
    with pytest.raises(FormatError, match="newer annlib"):
        aio.load_index_file(path)


def test_version_zero_is_invalid(index_path):
    path, _ = index_path
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 4, 0)
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="invalid format version 0"):
        aio.load_index_file(path)


@pytest.mark.parametrize("header_len", [2**64 - 1, 2**40, 10**9, 0])
def test_bogus_header_length_is_a_format_error_not_a_memory_error(index_path, header_len):
    path, _ = index_path
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 8, header_len)
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="header"):
        aio.load_index_file(path, mmap=False)


def _rewrite_header(path, mutate) -> None:
    """Change the header JSON and fix up every checksum, as a malicious or buggy writer would.

    The new JSON is padded with spaces to the old length, so no offsets move; the saved
    config carries a "filler" entry that is dropped first to make room.
    """
    data = bytearray(path.read_bytes())
    (header_len,) = struct.unpack_from("<Q", data, 8)
    header = json.loads(data[16 : 16 + header_len])
    header["config"].pop("filler", None)
    header = mutate(header)
    new = json.dumps(header).encode() if not isinstance(header, bytes) else header
    assert len(new) <= header_len, "mutation grew the header; give the file a longer filler"
    new = new + b" " * (header_len - len(new))
    data[16 : 16 + header_len] = new
    header_crc = zlib.crc32(bytes(data[: 16 + header_len]))
    struct.pack_into("<I", data, 16 + header_len, header_crc)
    # When the header is deliberately unusable, leave the trailer as it was.
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
        crcs = [header_crc] + [int(s["crc32"]) & 0xFFFFFFFF for s in json.loads(new)["sections"]]
        struct.pack_into("<I", data, len(data) - 8, zlib.crc32(struct.pack(f"<{len(crcs)}I", *crcs)))
    path.write_bytes(bytes(data))


def _section(i, **changes):
    def mutate(header):
        header["sections"][i].update(changes)
        return header

    return mutate


def _set(key, value):
    def mutate(header):
        header[key] = value
        return header

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_section(0, shape=[2**40, 2**30]), "nbytes is"),
        (_section(0, shape=[2**40, 2**30], nbytes=2**72), "offset|truncated|does not fit"),
        (_section(1, offset=10**15), "offset is"),
        (_section(1, offset=-64), "offset must be a non-negative integer"),
        (_section(0, offset=8), "offset is 8"),
        (_section(0, nbytes=1), "nbytes is 1"),
        (_section(0, shape=[-1, 5]), "shape must be"),
        (_section(0, shape=[1.5]), "shape must be"),
        (_section(0, shape=[True]), "shape must be"),
        (_section(0, shape=[1] * 40), "shape must be"),
        (_section(0, dtype="|O"), "unsupported dtype"),
        (_section(0, dtype=">f4"), "unsupported dtype"),
        (_section(0, dtype="<c8"), "unsupported dtype"),
        (_section(0, crc32=2**40), "crc32"),
        (_section(1, name="vectors"), "repeats"),
        (_section(1, name=""), "no valid name"),
        (lambda h: {**h, "sections": [*h["sections"], "x"]}, "must be a JSON object"),
        (lambda h: {**h, "sections": h["sections"][:-1]}, "unexpected bytes"),
        (_set("kind", 3), "'kind' must be a str"),
        (_set("kind", ""), "'kind' is empty"),
        (_set("config", [1]), "'config' must be a dict"),
        (_set("sections", {}), "'sections' must be a list"),
        (lambda h: [h], "must be a JSON object"),
        (lambda h: b"{not json", "not valid UTF-8 JSON"),
        (lambda h: b'{"kind": "\xff"}', "not valid UTF-8 JSON"),
    ],
)
def test_malformed_header_behind_a_valid_checksum_is_a_format_error(tmp_path, rng, mutate, message):
    path = tmp_path / "crafted.annl"
    arrays = {"vectors": rng.standard_normal((4, 3)).astype(np.float32), "ids": np.arange(4)}
    aio.save_index_file(path, "kind", {"filler": "x" * 400}, arrays)
    _rewrite_header(path, mutate)
    for mmap_ in (True, False):
        with pytest.raises(FormatError, match=message):
            aio.load_index_file(path, mmap=mmap_)


def test_corrupt_file_errors_are_annlib_and_value_errors(index_path):
    path, _ = index_path
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(AnnlibError):
        aio.load_index_file(path)
    with pytest.raises(ValueError, match="truncated"):
        aio.load_index_file(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        aio.load_index_file(tmp_path / "missing.annl")
    with pytest.raises(FileNotFoundError):
        aio.read_header(tmp_path / "missing.annl")
    with pytest.raises((IsADirectoryError, PermissionError)):
        aio.load_index_file(tmp_path)
    with pytest.raises(IsADirectoryError):
        aio.save_index_file(tmp_path, "kind", {}, {})
    with pytest.raises(FileNotFoundError):
        aio.save_index_file(tmp_path / "no" / "such" / "dir.annl", "kind", {}, {})


# --------------------------------------------------------------------------- atomic saves


def _only_files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _failing_write(after_bytes: int, exc: BaseException):
    written = [0]
    real = aio._write_chunks

    def write_chunks(file, data):
        if written[0] + len(data) > after_bytes:
            file.write(data[: max(0, after_bytes - written[0])])
            raise exc
        written[0] += len(data)
        real(file, data)

    return write_chunks


@pytest.mark.parametrize(
    "exc", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["disk-full", "interrupt"]
)
def test_failed_save_leaves_the_previous_file_intact_and_no_temp_file(index_path, monkeypatch, exc):
    path, arrays = index_path
    before = path.read_bytes()
    big = {"vectors": np.ones((1000, 64), np.float32), "more": np.ones((1000, 64), np.float32)}
    monkeypatch.setattr(aio, "_write_chunks", _failing_write(300_000, exc))
    with pytest.raises(type(exc)):
        aio.save_index_file(path, "new_kind", {}, big)
    monkeypatch.undo()
    assert _only_files(path.parent) == [path.name]
    assert path.read_bytes() == before
    kind, config, loaded = aio.load_index_file(path)
    assert (kind, config) == ("test_kind", CONFIG)
    _assert_identical(loaded["vectors"], arrays["vectors"])


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failure_at_fsync_or_replace_leaves_the_previous_file_intact(index_path, monkeypatch, step):
    path, _ = index_path
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(5, f"simulated {step} failure")

    monkeypatch.setattr(aio.os, step, fail)
    with pytest.raises(OSError, match=f"simulated {step} failure"):
        aio.save_index_file(path, "new_kind", {}, {"x": np.arange(10)})
    monkeypatch.undo()
    assert _only_files(path.parent) == [path.name]
    assert path.read_bytes() == before


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(aio, "_write_chunks", _failing_write(10, OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space left"):
        aio.save_index_file(tmp_path / "new.annl", "kind", {}, {"x": np.arange(100)})
    assert _only_files(tmp_path) == []


def test_save_replaces_an_existing_file(index_path):
    path, _ = index_path
    aio.save_index_file(path, "second", {"b": 2}, {"y": np.arange(3, dtype=np.uint16)})
    kind, config, arrays = aio.load_index_file(path)
    assert (kind, config, list(arrays)) == ("second", {"b": 2}, ["y"])
    assert _only_files(path.parent) == [path.name]


# --------------------------------------------------------------------------- bad input to save


class _Opaque:
    pass


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"x": _Opaque()}, r"config\['x'\]"),
        ({"n": np.int64(3)}, r"config\['n'\]"),
        ({"a": {"b": [1, {2, 3}]}}, r"config\['a'\]\['b'\]\[1\]"),
        ({"raw": b"bytes"}, r"config\['raw'\]"),
        ({"a": {1: "int key"}}, r"config\['a'\] has key 1"),
        ({"arr": np.zeros(2)}, r"config\['arr'\]"),
    ],
)
def test_non_json_config_is_a_type_error_naming_the_key_and_writes_nothing(tmp_path, config, where):
    with pytest.raises(TypeError, match=where):
        aio.save_index_file(tmp_path / "x.annl", "kind", config, {"x": np.arange(3)})
    assert _only_files(tmp_path) == []


def test_non_finite_and_circular_config_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match=r"config\['t'\] must be a finite number"):
        aio.save_index_file(tmp_path / "x.annl", "kind", {"t": float("nan")}, {})
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="circular"):
        aio.save_index_file(tmp_path / "x.annl", "kind", {"loop": loop}, {})
    assert _only_files(tmp_path) == []


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(3, np.complex64),
        np.array(["a", "b"]),
        np.array([object()]),
        np.zeros(2, "datetime64[s]"),
        np.zeros(2, [("a", "<i4"), ("b", "<f4")]),
        np.zeros(2, np.longdouble) if np.dtype(np.longdouble).itemsize > 8 else np.zeros(2, np.clongdouble),
    ],
    ids=["complex", "str", "object", "datetime", "structured", "longdouble"],
)
def test_unsupported_dtype_is_a_type_error_and_writes_nothing(tmp_path, array):
    with pytest.raises(TypeError, match=r"arrays\['bad'\] has unsupported dtype"):
        aio.save_index_file(tmp_path / "x.annl", "kind", {}, {"ok": np.arange(2), "bad": array})
    assert _only_files(tmp_path) == []


@pytest.mark.parametrize(
    ("kind", "config", "arrays", "error", "message"),
    [
        (3, {}, {}, TypeError, "kind must be a string"),
        ("", {}, {}, ValueError, "kind must be a non-empty"),
        ("k", [("a", 1)], {}, TypeError, "config must be a dict"),
        ("k", {}, [np.arange(3)], TypeError, "arrays must be a dict"),
        ("k", {}, {"x": [1, 2, 3]}, TypeError, r"arrays\['x'\] must be a numpy array"),
        ("k", {}, {1: np.arange(3)}, TypeError, "array names must be non-empty strings"),
        ("k", {}, {"x": np.zeros((1,) * 33)}, ValueError, "33 dimensions"),
    ],
)
def test_other_bad_arguments_write_nothing(tmp_path, kind, config, arrays, error, message):
    with pytest.raises(error, match=message):
        aio.save_index_file(tmp_path / "x.annl", kind, config, arrays)
    assert _only_files(tmp_path) == []
