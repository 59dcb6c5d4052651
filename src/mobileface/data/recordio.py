"""InsightFace RecordIO (``.rec`` + ``.idx``) in pure Python: how MS1M, Glint360K and WebFace
are distributed. No mxnet needed, and files written here open in mxnet and InsightFace.

The container (dmlc RecordIO): each record is the magic ``0xced7230a``, a 32-bit word holding a
3-bit continuation flag and a 29-bit length, the payload, and zero padding to 4 bytes. Payloads
that contain the magic at a 4-byte boundary are split there into parts (flags 1, 2, 3), and
the reader puts the magic back. The ``.idx`` file has one ``key<TAB>byte offset`` line a record.

The payload (mxnet ``recordio.pack``): a 24-byte ``IRHeader`` (``struct '<IfQQ'``: flag,
label, id, id2), then ``flag`` float32 labels when ``flag > 0``, then the encoded image.

InsightFace's layout: record 0 is a header with label ``(first identity key, end key)``; images
are keys ``1..N``; keys ``N+1 ..`` hold one record per identity with label ``(first image key,
end image key)``, the identity's images being contiguous.
"""

from __future__ import annotations

import numbers
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataFormatError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24
_MAX_LENGTH = (1 << 29) - 1


@dataclass(frozen=True)
class IRHeader:
    """mxnet's image record header. ``label`` is a float, or a float32 array when ``flag > 0``."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int = 0


def pack(header: IRHeader, payload: bytes = b"") -> bytes:
    """Header + payload as mxnet's ``recordio.pack`` lays them out."""
    if isinstance(header.label, numbers.Number):
        head = struct.pack(_IR_FORMAT, 0, float(header.label), int(header.id), int(header.id2))
        return head + bytes(payload)
    label = np.asarray(header.label, dtype="<f4").reshape(-1)
    head = struct.pack(_IR_FORMAT, label.size, 0.0, int(header.id), int(header.id2))
    return head + label.tobytes() + bytes(payload)


def unpack(record: bytes, *, where: str = "record") -> tuple[IRHeader, bytes]:
    """Split a record into its :class:`IRHeader` and payload (inverse of :func:`pack`)."""
    if len(record) < _IR_SIZE:
        raise DataFormatError(
            f"{where}: {len(record)} bytes is too short for an image record header "
            f"({_IR_SIZE} bytes)"
        )
    flag, label, key, key2 = struct.unpack_from(_IR_FORMAT, record)
    rest = record[_IR_SIZE:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise DataFormatError(f"{where}: header announces {flag} labels, record too short")
        labels = np.frombuffer(rest, dtype="<f4", count=flag).astype(np.float32)
        return IRHeader(flag, labels, key, key2), rest[4 * flag :]
    return IRHeader(0, float(label), key, key2), rest


def encode_record(payload: bytes) -> bytes:
    """``payload`` framed as dmlc RecordIO bytes (split at aligned magics, padded)."""
    data = bytes(payload)
    if len(data) > _MAX_LENGTH:
        raise DataFormatError(f"a record holds at most {_MAX_LENGTH} bytes, got {len(data)}")
    out = bytearray()
    start = 0
    for i in range(0, len(data) - len(data) % 4, 4):
        if data[i : i + 4] == _MAGIC_BYTES:
            flag = 1 if start == 0 else 2
            out += _MAGIC_BYTES + struct.pack("<I", (flag << 29) | (i - start)) + data[start:i]
            start = i + 4
    flag = 3 if start else 0
    out += _MAGIC_BYTES + struct.pack("<I", (flag << 29) | (len(data) - start)) + data[start:]
    out += b"\0" * (-len(data) % 4)
    return bytes(out)


class RecordReader:
    """Read records by key (through the ``.idx``) or in file order.

    ``idx_path`` defaults to the ``.rec`` path with ``.idx``; without an index only iteration
    works. Broken offsets, bad magic and truncation raise :class:`DataFormatError` naming the
    file, the key and the offset. Safe to pickle (each process reopens the file).
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise DataFormatError(f"{self.rec_path}: no such file")
        self.size = self.rec_path.stat().st_size
        if idx_path is None:
            guess = self.rec_path.with_suffix(".idx")
            idx_path = guess if guess.is_file() else None
        self.idx_path = Path(idx_path) if idx_path is not None else None
        self._offsets: dict[int, int] = {}
        self.keys: list[int] = []
        if self.idx_path is not None:
            self._read_index()
        self._file = None
        self._pid = None

    def _read_index(self) -> None:
        assert self.idx_path is not None
        try:
            text = self.idx_path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise DataFormatError(f"{self.idx_path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"{self.idx_path}: unreadable index: {exc}") from None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                key, offset = int(fields[0]), int(fields[1])
                if len(fields) != 2:
                    raise ValueError
            except (ValueError, IndexError):
                raise DataFormatError(
                    f"{self.idx_path}:{number}: expected 'key<TAB>offset', got {line[:60]!r}"
                ) from None
            if not 0 <= offset <= self.size - 8:
                raise DataFormatError(
                    f"{self.idx_path}:{number}: offset {offset} of key {key} lies outside "
                    f"{self.rec_path.name} ({self.size} bytes)"
                )
            if key in self._offsets:
                raise DataFormatError(f"{self.idx_path}:{number}: key {key} listed twice")
            self._offsets[key] = offset
            self.keys.append(key)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._offsets

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = open(self.rec_path, "rb")  # noqa: SIM115 (kept open for reuse)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def offset(self, key: int) -> int:
        try:
            return self._offsets[key]
        except KeyError:
            where = self.idx_path or self.rec_path
            raise KeyError(f"{where}: no record with key {key}") from None

    def read_idx(self, key: int) -> bytes:
        """The payload of the record with ``key`` (multi-part records joined)."""
        return self.read_at(self.offset(key), key=key)[0]

    def read_header(self, key: int) -> IRHeader:
        """Just the :class:`IRHeader` of record ``key`` (reads a few bytes, not the image)."""
        offset = self.offset(key)
        where = self._where(key, offset)
        f = self._handle()
        f.seek(offset)
        head = f.read(8 + _IR_SIZE)
        if len(head) == 8 + _IR_SIZE:
            magic, word, flag = struct.unpack_from("<III", head)
            length = word & _MAX_LENGTH
            if magic == MAGIC and word >> 29 == 0 and flag < 1024 and length >= _IR_SIZE + 4 * flag:
                return unpack(head[8:] + f.read(4 * flag), where=where)[0]
        # A split record, or a broken one: read it whole (which reports what is wrong).
        return unpack(self.read_at(offset, key=key)[0], where=where)[0]

    def _where(self, key: int | None, offset: int) -> str:
        name = f"record {key} " if key is not None else "record "
        return f"{self.rec_path}: {name}at offset {offset}"

    def read_at(self, offset: int, key: int | None = None) -> tuple[bytes, int]:
        """The record starting at byte ``offset`` and the offset just after it."""
        f = self._handle()
        parts: list[bytes] = []
        position = offset
        while True:
            f.seek(position)
            head = f.read(8)
            if len(head) < 8:
                raise DataFormatError(
                    f"{self._where(key, offset)}: file ends inside the record header "
                    f"({self.size} bytes): truncated .rec or wrong offset"
                )
            magic, word = struct.unpack("<II", head)
            if magic != MAGIC:
                raise DataFormatError(
                    f"{self._where(key, offset)}: no record starts at byte {position} (found "
                    f"0x{magic:08x}, expected 0x{MAGIC:08x}): the .idx does not match the .rec, "
                    "or the file is corrupt"
                )
            flag, length = word >> 29, word & _MAX_LENGTH
            if flag > 3 or (parts and flag not in (2, 3)) or (not parts and flag in (2, 3)):
                raise DataFormatError(
                    f"{self._where(key, offset)}: broken continuation flag {flag} at byte "
                    f"{position}"
                )
            padded = length + (-length % 4)
            if position + 8 + padded > self.size:
                raise DataFormatError(
                    f"{self._where(key, offset)}: record claims {length} bytes at byte "
                    f"{position} but the file ends at {self.size}: truncated .rec"
                )
            parts.append(f.read(length))
            position += 8 + padded
            if flag in (0, 3):
                return _MAGIC_BYTES.join(parts), position

    def __iter__(self) -> Iterator[bytes]:
        """Every record in file order (needs no index)."""
        position = 0
        while position < self.size:
            record, position = self.read_at(position)
            yield record


class RecordWriter:
    """Write a ``.rec`` and its ``.idx``; both appear only when the writer closes cleanly.

    Use as a context manager: an exception inside removes the half-written files.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_rec = self.rec_path.with_name(f".{self.rec_path.name}.{os.getpid()}.tmp")
        self._tmp_idx = self.idx_path.with_name(f".{self.idx_path.name}.{os.getpid()}.tmp")
        self._rec = open(self._tmp_rec, "wb")  # noqa: SIM115 (closed by close())
        self._idx = open(self._tmp_idx, "w", encoding="ascii")  # noqa: SIM115
        self._keys: set[int] = set()
        self._position = 0

    def write(self, payload: bytes) -> int:
        """Append a record (not indexed); returns its offset."""
        offset = self._position
        data = encode_record(payload)
        self._rec.write(data)
        self._position += len(data)
        return offset

    def write_idx(self, key: int, payload: bytes) -> int:
        """Append a record and index it under ``key``; returns its offset."""
        key = int(key)
        if key in self._keys:
            raise ValueError(f"key {key} written twice")
        self._keys.add(key)
        offset = self.write(payload)
        self._idx.write(f"{key}\t{offset}\n")
        return offset

    def close(self) -> None:
        if self._rec.closed:
            return
        self._rec.close()
        self._idx.close()
        os.replace(self._tmp_rec, self.rec_path)
        os.replace(self._tmp_idx, self.idx_path)

    def abort(self) -> None:
        """Close and remove the partial files."""
        self._rec.close()
        self._idx.close()
        for tmp in (self._tmp_rec, self._tmp_idx):
            if tmp.exists():
                tmp.unlink()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_face_record(
    rec_path: str | Path, items: Sequence[tuple[bytes, int]], *, idx_path: str | Path | None = None
) -> dict:
    """Write ``(encoded image, integer label)`` items in InsightFace's layout.

    Items are grouped by label (stable within a label); labels should be ``0..C-1``. Returns
    ``{"images": N, "identities": C}``.
    """
    ordered = sorted(items, key=lambda item: int(item[1]))
    if not ordered:
        raise ValueError("no items to write")
    n = len(ordered)
    ranges: list[tuple[int, int]] = []
    for key, (_, label) in enumerate(ordered, start=1):
        if ranges and int(ordered[ranges[-1][0] - 1][1]) == int(label):
            ranges[-1] = (ranges[-1][0], key + 1)
        else:
            ranges.append((key, key + 1))
    first_identity = n + 1
    with RecordWriter(rec_path, idx_path) as writer:
        header0 = IRHeader(2, np.array([first_identity, first_identity + len(ranges)]), 0)
        writer.write_idx(0, pack(header0))
        for key, (payload, label) in enumerate(ordered, start=1):
            writer.write_idx(key, pack(IRHeader(0, float(int(label)), key), payload))
        for j, (start, end) in enumerate(ranges):
            key = first_identity + j
            writer.write_idx(key, pack(IRHeader(2, np.array([start, end]), key)))
    return {"images": n, "identities": len(ranges)}


class FaceRecord:
    """An InsightFace ``.rec`` as a data set: ``len``, ``[i] -> (encoded image, label)``.

    Follows record 0's header to find the image keys and the identity ranges; files without
    that header are read as plain image records (every key).
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        path = Path(rec_path)
        if path.suffix != ".rec" and path.with_suffix(".rec").is_file():
            path = path.with_suffix(".rec")
        self.reader = RecordReader(path, idx_path)
        if self.reader.idx_path is None:
            raise DataFormatError(f"{path}: the .idx beside it is missing")
        self.identity_ranges: list[tuple[int, int]] = []
        header0 = self.reader.read_header(0) if 0 in self.reader else None
        if header0 is not None and header0.flag > 0:
            first, end = (int(v) for v in np.asarray(header0.label)[:2])
            self.image_keys = list(range(1, first))
            for key in range(first, end):
                label = np.asarray(self.reader.read_header(key).label)
                if label.size < 2:
                    raise DataFormatError(f"{path}: identity record {key} has no image range")
                self.identity_ranges.append((int(label[0]), int(label[1])))
        else:
            self.image_keys = list(self.reader.keys)

    def __len__(self) -> int:
        return len(self.image_keys)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        key = self.image_keys[index]
        header, payload = unpack(self.reader.read_idx(key), where=f"{self.reader.rec_path}:{key}")
        return payload, _label_of(header)

    def label(self, index: int) -> int:
        return _label_of(self.reader.read_header(self.image_keys[index]))

    def labels(self) -> np.ndarray:
        """Every image's label: from the identity ranges when present, else from headers."""
        if self.identity_ranges:
            out = np.full(len(self.image_keys), -1, dtype=np.int64)
            for start, end in self.identity_ranges:
                label = self.label(start - 1)
                out[start - 1 : end - 1] = label
            return out
        return np.array([self.label(i) for i in range(len(self))], dtype=np.int64)

    @property
    def num_classes(self) -> int:
        if self.identity_ranges:
            return len(self.identity_ranges)
        return int(len(set(self.labels().tolist())))

    def image(self, index: int) -> tuple[np.ndarray, int]:
        """Decoded ``(H x W x 3 uint8 RGB, label)``."""
        from ..image import load_image

        payload, label = self[index]
        return load_image(payload, name=f"{self.reader.rec_path}[{index}]"), label


def _label_of(header: IRHeader) -> int:
    label = header.label
    if isinstance(label, np.ndarray):
        label = label[0]
    return int(label)
