"""InsightFace RecordIO in pure Python: framing, headers, the identity layout, broken files."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobileface.data.recordio import (
    MAGIC,
    FaceRecord,
    IRHeader,
    RecordReader,
    RecordWriter,
    encode_record,
    pack,
    unpack,
    write_face_record,
)
from mobileface.errors import DataFormatError

MAGIC_BYTES = struct.pack("<I", MAGIC)


def _jpeg(seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_framing_matches_dmlc_recordio_byte_for_byte() -> None:
    # 5 bytes: magic, length word (flag 0, length 5), payload, 3 bytes of padding
    assert encode_record(b"hello") == MAGIC_BYTES + struct.pack("<I", 5) + b"hello\0\0\0"
    assert encode_record(b"") == MAGIC_BYTES + struct.pack("<I", 0)
    # a payload holding the magic at an aligned position is split in parts (flags 1 and 3)
    data = b"abcd" + MAGIC_BYTES + b"efgh"
    expected = (
        MAGIC_BYTES
        + struct.pack("<I", (1 << 29) | 4)
        + b"abcd"
        + MAGIC_BYTES
        + struct.pack("<I", (3 << 29) | 4)
        + b"efgh"
    )
    assert encode_record(data) == expected
    # unaligned magic bytes are kept inside one part
    assert len(encode_record(b"a" + MAGIC_BYTES + b"bcd")) == 8 + 8


def test_header_pack_unpack_as_mxnet_does() -> None:
    scalar = pack(IRHeader(0, 7.0, 3, 0), b"IMG")
    assert scalar[:24] == struct.pack("<IfQQ", 0, 7.0, 3, 0)
    header, payload = unpack(scalar)
    assert header.flag == 0 and header.label == 7.0 and header.id == 3 and payload == b"IMG"
    vector = pack(IRHeader(0, np.array([5.0, 9.0]), 0), b"")
    assert vector[:24] == struct.pack("<IfQQ", 2, 0.0, 0, 0)
    header, payload = unpack(vector)
    assert header.flag == 2 and header.label.tolist() == [5.0, 9.0] and payload == b""
    with pytest.raises(DataFormatError, match="too short"):
        unpack(b"short")


def test_reader_and_writer_round_trip_with_split_records(tmp_path: Path) -> None:
    payloads = [b"", b"x", MAGIC_BYTES * 3, b"ab" + MAGIC_BYTES + b"cd" + MAGIC_BYTES, _jpeg(1)]
    rec = tmp_path / "t.rec"
    with RecordWriter(rec) as writer:
        for key, payload in enumerate(payloads):
            writer.write_idx(key * 10, payload)
    reader = RecordReader(rec)
    assert reader.keys == [0, 10, 20, 30, 40] and len(reader) == 5
    for key, payload in enumerate(payloads):
        assert reader.read_idx(key * 10) == payload
    assert list(reader) == payloads  # sequential reading needs no index
    with pytest.raises(KeyError, match="no record with key 5"):
        reader.read_idx(5)
    # picklable for data-loader workers; the copy reopens the file
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.read_idx(40) == payloads[4]


def test_insightface_layout_with_identity_ranges(tmp_path: Path) -> None:
    items = [(_jpeg(i), label) for i, label in enumerate([2, 0, 1, 0, 2, 2])]
    stats = write_face_record(tmp_path / "train.rec", items)
    assert stats == {"images": 6, "identities": 3}
    reader = RecordReader(tmp_path / "train.rec")
    header0, _ = unpack(reader.read_idx(0))
    assert header0.flag == 2 and header0.label.tolist() == [7.0, 10.0]
    ranges = [unpack(reader.read_idx(k))[0].label.tolist() for k in (7, 8, 9)]
    assert ranges == [[1.0, 3.0], [3.0, 4.0], [4.0, 7.0]]

    data = FaceRecord(tmp_path / "train")  # the prefix works too
    assert len(data) == 6 and data.num_classes == 3
    assert data.identity_ranges == [(1, 3), (3, 4), (4, 7)]
    assert data.labels().tolist() == [0, 0, 1, 2, 2, 2]
    payload, label = data[0]
    assert label == 0 and payload == items[1][0]  # grouped by label, stable within a label
    image, label = data.image(5)
    assert image.shape == (32, 32, 3) and label == 2


def test_images_with_vector_labels_as_face2rec_writes_them(tmp_path: Path) -> None:
    rec = tmp_path / "v.rec"
    with RecordWriter(rec) as writer:
        writer.write_idx(0, pack(IRHeader(2, np.array([3.0, 4.0]), 0)))
        writer.write_idx(1, pack(IRHeader(2, np.array([0.0, 1.0]), 1), _jpeg(1)))
        writer.write_idx(2, pack(IRHeader(2, np.array([0.0, 1.0]), 2), _jpeg(2)))
        writer.write_idx(3, pack(IRHeader(2, np.array([1.0, 3.0]), 3)))
    data = FaceRecord(rec)
    assert len(data) == 2 and data[1][1] == 0 and data.labels().tolist() == [0, 0]


def test_broken_offset_is_reported_with_key_and_offset(tmp_path: Path) -> None:
    write_face_record(tmp_path / "b.rec", [(_jpeg(i), i % 2) for i in range(4)])
    idx = tmp_path / "b.idx"
    lines = idx.read_text().splitlines()
    key, offset = lines[2].split("\t")
    lines[2] = f"{key}\t{int(offset) + 6}"
    idx.write_text("\n".join(lines) + "\n")
    reader = RecordReader(tmp_path / "b.rec")
    with pytest.raises(DataFormatError, match=rf"record {key} at offset {int(offset) + 6}.*idx"):
        reader.read_idx(int(key))


def test_offset_past_the_end_and_malformed_index(tmp_path: Path) -> None:
    write_face_record(tmp_path / "c.rec", [(_jpeg(0), 0)])
    idx = tmp_path / "c.idx"
    good = idx.read_text()
    idx.write_text(good + "99\t123456789\n")
    with pytest.raises(DataFormatError, match=r"c\.idx:4: offset 123456789 .* outside"):
        RecordReader(tmp_path / "c.rec")
    idx.write_text(good + "oops\n")
    with pytest.raises(DataFormatError, match=r"c\.idx:4: expected 'key<TAB>offset'"):
        RecordReader(tmp_path / "c.rec")


def test_truncated_rec_is_reported(tmp_path: Path) -> None:
    write_face_record(tmp_path / "d.rec", [(_jpeg(i), 0) for i in range(3)])
    rec = tmp_path / "d.rec"
    data = rec.read_bytes()
    reader_full = RecordReader(rec)
    last_key = 3
    cut_at = reader_full.offset(last_key) + 40
    rec.write_bytes(data[:cut_at])
    (tmp_path / "d.idx").write_text(
        "\n".join(
            line
            for line in (tmp_path / "d.idx").read_text().splitlines()
            if int(line.split("\t")[1]) < cut_at - 8
        )
    )
    reader = RecordReader(rec)
    with pytest.raises(DataFormatError, match="truncated"):
        reader.read_idx(last_key)
    with pytest.raises(DataFormatError, match="truncated"):
        list(reader)


def test_not_a_rec_file(tmp_path: Path) -> None:
    bogus = tmp_path / "e.rec"
    bogus.write_bytes(b"\x00" * 64)
    (tmp_path / "e.idx").write_text("0\t0\n")
    with pytest.raises(DataFormatError, match="expected 0xced7230a"):
        FaceRecord(bogus)
    with pytest.raises(DataFormatError, match="no such file"):
        RecordReader(tmp_path / "none.rec")


def test_writer_leaves_nothing_behind_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), RecordWriter(tmp_path / "f.rec") as writer:
        writer.write_idx(0, b"abc")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with RecordWriter(tmp_path / "g.rec") as writer:
        writer.write_idx(0, b"abc")
        with pytest.raises(ValueError, match="twice"):
            writer.write_idx(0, b"again")
