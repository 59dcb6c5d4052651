"""Training data: labelled face crops from several datasets, in a deterministic order.

Samples from every configured dataset are merged into one list of (image reference, label).
Identities stay distinct between datasets unless they share a ``namespace``, in which case
identities with the same name merge (CelebA sets that share ids, for instance).

The order of samples is a pure function of (seed, step): :class:`StepSampler` yields, for each
optimiser step, this rank's share of one global batch, and augmentation randomness is seeded
by (seed, epoch, sample index). Resuming at step k therefore reproduces the uninterrupted run
exactly, whatever the number of loader workers.

Decoding JPEGs costs more than a MobileFaceNet step on a small CPU, so crops can be decoded
once into a uint8 memory-mapped array (``data.cache_dir``) shared by all workers and ranks.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from mobileface.data.augment import (
    ColorJitter,
    Compose,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    LowResolution,
    ScaleCropJitter,
)
from mobileface.data.folders import list_image_folder, read_labels_tsv
from mobileface.data.recordio import FaceRecord
from mobileface.errors import DataFormatError
from mobileface.image import load_image

from .config import AugmentConfig, DataConfig, DatasetConfig


@dataclass(frozen=True)
class ImageRef:
    """Where one training image lives: a file, or record ``index`` of a .rec file."""

    path: str
    record: int = -1


@dataclass
class SampleList:
    refs: list[ImageRef]
    labels: np.ndarray  # int64, one per ref
    class_names: list[str]  # label -> "namespace/identity"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for ref, label in zip(self.refs, self.labels.tolist(), strict=True):
            digest.update(f"{ref.path}\0{ref.record}\0{label}\n".encode())
        return digest.hexdigest()[:16]

    def content_fingerprint(self) -> str:
        """A digest of every image file's size and modification time: changes when a crop is
        rewritten (a record file counts as one file)."""
        digest = hashlib.sha256()
        for path in dict.fromkeys(ref.path for ref in self.refs):
            try:
                stat = os.stat(path)
            except OSError as exc:
                raise DataFormatError(f"{path}: cannot read training image ({exc})") from None
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


def _dataset_entries(config: DatasetConfig) -> list[tuple[ImageRef, str]]:
    """(image, identity name) pairs of one configured dataset."""
    if not config.path.exists():
        raise DataFormatError(f"dataset {config.path}: no such file or folder")
    if config.type == "folder":
        return [(ImageRef(str(p)), name) for p, name in list_image_folder(config.path)]
    if config.type == "labels":
        rows = read_labels_tsv(config.path, config.images)
        present = [(ImageRef(str(p)), name) for p, name in rows if p.is_file()]
        if len(present) < len(rows):  # e.g. faces the aligner could not find
            missing = [str(p) for p, _ in rows if not p.is_file()]
            warnings.warn(
                f"{config.path}: {len(missing)} of {len(rows)} listed images are missing and "
                f"left out (first: {', '.join(missing[:3])})",
                stacklevel=2,
            )
        return present
    labels = FaceRecord(config.path).labels()
    return [(ImageRef(str(config.path), i), str(label)) for i, label in enumerate(labels.tolist())]


def build_augmentation(config: AugmentConfig, flip: bool = True) -> Compose:
    """The configured augmentations (each with its probability; 0 switches one off).

    ``flip=False`` leaves the mirror out, for a caller that mirrors (and records it) itself.
    """
    transforms: list = []
    if config.flip > 0 and flip:
        transforms.append(HorizontalFlip(p=config.flip))
    if config.crop_scale > 0:
        transforms.append(ScaleCropJitter(scale=(1 - config.crop_scale, 1 + config.crop_scale)))
    if config.color_jitter > 0:
        transforms.append(ColorJitter(p=config.color_jitter))
    if config.blur > 0:
        transforms.append(GaussianBlur(p=config.blur))
    if config.grayscale > 0:
        transforms.append(Grayscale(p=config.grayscale))
    if config.low_resolution > 0:
        transforms.append(LowResolution(p=config.low_resolution))
    return Compose(transforms)


def build_samples(datasets: list[DatasetConfig]) -> SampleList:
    """Merge datasets into one labelled sample list (see the module docstring)."""
    class_index: dict[str, int] = {}
    seen_files: dict[str, set[str]] = {}
    refs: list[ImageRef] = []
    labels: list[int] = []
    for position, dataset in enumerate(datasets):
        namespace = dataset.namespace or f"{position}:{dataset.path.name}"
        entries = _dataset_entries(dataset)
        counts: dict[str, int] = {}
        for _, name in entries:
            counts[name] = counts.get(name, 0) + 1
        seen = seen_files.setdefault(namespace, set())
        for ref, name in entries:
            if counts[name] < dataset.min_images:
                continue
            key = Path(ref.path).name if ref.record < 0 else f"{ref.path}#{ref.record}"
            if dataset.dedupe and key in seen:
                continue
            seen.add(key)
            label = class_index.setdefault(f"{namespace}/{name}", len(class_index))
            refs.append(ref)
            labels.append(label)
    if not refs:
        raise DataFormatError("the configured datasets hold no images")
    return SampleList(refs, np.asarray(labels, dtype=np.int64), list(class_index))


class StepSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (epoch, sample index) for this rank, from ``start_step`` on, forever.

    Each epoch is a seeded permutation cut into global batches (the incomplete tail is
    dropped); rank r takes the r-th slice of each global batch.
    """

    def __init__(
        self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
        start_step: int = 0,
    ) -> None:  # fmt: skip
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.global_batch = batch_size * world_size
        self.steps_per_epoch = num_samples // self.global_batch
        if self.steps_per_epoch == 0:
            raise DataFormatError(
                f"{num_samples} training images are fewer than one global batch "
                f"({batch_size} x {world_size} processes)"
            )

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            epoch, within = divmod(step, self.steps_per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            start = within * self.global_batch + self.rank * self.batch_size
            yield [(epoch, int(i)) for i in order[start : start + self.batch_size]]
            step += 1

    def __len__(self) -> int:  # one epoch; iteration itself never ends
        return self.steps_per_epoch


class FaceDataset(Dataset):
    """Decoded, augmented crops: (HxWx3 uint8 tensor, label, sample index, mirrored, target).

    The mirror is drawn first and reported, so that distillation can take the teacher's
    embedding of the same view (the teacher saw each crop and its mirror image). With
    ``teacher`` (online distillation), ``target`` is that teacher's raw embedding of the crop
    exactly as augmented; otherwise it is empty.
    """

    def __init__(
        self,
        samples: SampleList,
        image_size: tuple[int, int],
        augment: AugmentConfig,
        seed: int,
        cache: np.ndarray | None = None,
        teacher: str | None = None,
    ) -> None:
        self.samples = samples
        self.image_size = image_size
        self.flip_probability = augment.flip
        self.augment = build_augmentation(augment, flip=False)
        self.seed = seed
        self.cache = cache
        self._records: dict[str, FaceRecord] = {}
        self.teacher = teacher
        self._teacher_fn = None  # opened lazily, once per loader worker

    def __len__(self) -> int:
        return len(self.samples.refs)

    def load(self, index: int) -> np.ndarray:
        """The decoded crop ``index`` (RGB uint8), resized to the training size if needed."""
        if self.cache is not None:
            return np.array(self.cache[index])  # a writable copy of the mapped crop
        ref = self.samples.refs[index]
        if ref.record >= 0:
            record = self._records.get(ref.path)
            if record is None:
                record = self._records[ref.path] = FaceRecord(ref.path)
            data, name = record[ref.record][0], f"{ref.path}#{ref.record}"
        else:
            data, name = Path(ref.path).read_bytes(), ref.path
        image = load_image(data, name=name)
        h, w = self.image_size
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return image

    def __getitem__(
        self, key: tuple[int, int]
    ) -> tuple[torch.Tensor, int, int, bool, torch.Tensor]:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        image = self.load(index)
        mirrored = bool(rng.random() < self.flip_probability)
        if mirrored:
            image = image[:, ::-1]
        image = np.ascontiguousarray(self.augment(image, rng))
        label = int(self.samples.labels[index])
        return torch.from_numpy(image), label, index, mirrored, self._teach(image)

    def _teach(self, image: np.ndarray) -> torch.Tensor:
        """The online teacher's raw embedding of ``image`` (empty without a teacher)."""
        if self.teacher is None:
            return torch.empty(0)
        if self._teacher_fn is None:
            from .distill import load_teacher

            self._teacher_fn = load_teacher(self.teacher)
        return torch.from_numpy(self._teacher_fn(image[None])[0].astype(np.float32))


def build_decoded_cache(
    samples: SampleList, image_size: tuple[int, int], cache_dir: Path, is_main: bool
) -> np.ndarray:
    """Decode every sample once into ``cache_dir`` (rank 0 writes; others wait and map it)."""
    h, w = image_size
    key = f"{samples.fingerprint()}-{h}x{w}"
    path = Path(cache_dir) / f"decoded-{key}.npy"
    meta = path.with_suffix(".json")
    if is_main and not meta.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shape = (len(samples.refs), h, w, 3)
        try:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            loader = FaceDataset(samples, image_size, AugmentConfig(flip=0), 0)
            for i in tqdm(range(len(samples.refs)), desc="decoding training images", unit="img"):
                array[i] = loader.load(i)
            array.flush()
            del array
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        meta.write_text(json.dumps({"images": len(samples.refs), "size": [h, w]}))
    from .distributed import barrier

    barrier()
    return np.load(path, mmap_mode="r")


def build_loader(
    config: DataConfig,
    samples: SampleList,
    image_size: tuple[int, int],
    batch_size: int,
    seed: int,
    rank: int,
    world_size: int,
    start_step: int,
    teacher: str | None = None,
) -> DataLoader:
    """The training loader: uint8 NHWC batches in the deterministic step order (with the
    online ``teacher``'s embedding of each augmented crop: :class:`FaceDataset`)."""
    cache = None
    if config.cache_dir is not None:
        cache = build_decoded_cache(samples, image_size, config.cache_dir, rank == 0)
    dataset = FaceDataset(samples, image_size, config.augment, seed, cache, teacher)
    sampler = StepSampler(len(samples.refs), batch_size, seed, rank, world_size, start_step)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        prefetch_factor=4 if config.workers > 0 else None,
    )
