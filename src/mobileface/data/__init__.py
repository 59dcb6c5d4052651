"""The field's dataset formats, torch-free: image folders, label lists, InsightFace RecordIO,
verification ``.bin`` sets, LFW-style pair lists, and NumPy/OpenCV training augmentations."""

from .augment import (
    ColorJitter,
    Compose,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    LowResolution,
    ScaleCropJitter,
    default_train_augment,
)
from .folders import label_index, list_image_folder, read_labels_tsv
from .pairs import Pair, read_pairs
from .recordio import (
    FaceRecord,
    IRHeader,
    RecordReader,
    RecordWriter,
    pack,
    unpack,
    write_face_record,
)
from .verification_bin import read_bin, write_bin

__all__ = [
    "ColorJitter",
    "Compose",
    "FaceRecord",
    "GaussianBlur",
    "Grayscale",
    "HorizontalFlip",
    "IRHeader",
    "LowResolution",
    "Pair",
    "RecordReader",
    "RecordWriter",
    "ScaleCropJitter",
    "default_train_augment",
    "label_index",
    "list_image_folder",
    "pack",
    "read_bin",
    "read_labels_tsv",
    "read_pairs",
    "unpack",
    "write_bin",
    "write_face_record",
]
