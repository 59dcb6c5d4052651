"""From image files (or encoded bytes) to L2-normalised embeddings, once per unique image.

Each image goes through:

1. **Reading and decoding** (:func:`mobileface.image.load_image`). An image that cannot be read
   or decoded is *unreadable*: it gets no embedding (a zero row) and is reported; the
   verification pipeline scores its pairs as non-matches (see :mod:`.verification`).
2. **Face crop.** With ``aligned=True`` the image already is the crop (brought to the model's
   input size by :func:`fit_crop` where it differs). Otherwise the detector runs and the
   face the policy picks is aligned by its 5 landmarks (:func:`mobileface.align.align_image`). Where
   no face is found, the documented **fallback** is a centre crop: the image is warped as if
   the five landmarks sat where they sit, on average, in face-centred photos (LFW's 250x250
   images; see :func:`mobileface.align.template.center_crop`), so the crop frames the face
   like the aligned crops. Such images are counted and reported as ``no_face``, never dropped.
3. **Embedding**: a dark or flat crop is first restored
   (:func:`mobileface.align.lighting.normalise_crop`, unless ``crop_norm=False``); then the
   model's raw embedding of the crop; with ``flip=True`` the sum of the embeddings of the crop
   and of its horizontal mirror; then L2 normalisation.

Embeddings (with each image's status and landmarks) are cached by
:class:`mobileface.evaluation.cache.EmbeddingCache`, keyed by the model file's hash, the
preprocessing and the image's bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobileface.errors import DataFormatError, MobileFaceError

from .cache import EmbeddingCache, make_key, sha256_bytes

OK, NO_FACE, UNREADABLE = "ok", "no_face", "unreadable"


@dataclass(frozen=True)
class ImageSource:
    """One image to embed: a file, or encoded bytes (from a .bin set); ``name`` is for reports."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return Path(self.path).read_bytes()


@dataclass(frozen=True)
class EmbedOptions:
    """How crops are made and embedded (all of it is part of the cache key)."""

    aligned: bool = False
    flip: bool = False
    detector: str = "yunet"
    policy: str = "prominent"  # which face of several: mobileface.align.POLICIES
    precise: bool = True  # YuNet averaged over 6 views, as `mobileface align` does
    batch_size: int = 64
    landmarks: bool = False  # on aligned crops, also run the detector to get landmarks (pose)
    low_light: bool = True  # YuNet's second pass on a contrast-restored copy (align.lighting)
    crop_norm: bool = True  # dark or flat crops restored before embedding (align.lighting)

    def key(self) -> dict[str, Any]:
        """What the cached embedding (and landmarks) of an image depend on."""
        out: dict[str, Any] = {"aligned": self.aligned, "flip": self.flip}
        if self.crop_norm:
            from mobileface.align.lighting import CROP_NORM_VERSION

            out["crop_norm"] = CROP_NORM_VERSION
        if not self.aligned:  # photos: detection, selection, fallback; landmarks come free
            out.update(detector=self.detector, policy=self.policy, fallback="center-crop")
            out["detector_options"] = self.detector_options()
        elif self.landmarks:  # aligned crops with landmarks from the detector (pose split)
            out.update(detector=self.detector, landmarks=True)
            out["detector_options"] = self.detector_options()
        return out

    def detector_options(self) -> dict[str, Any]:
        """Keyword arguments of the detector: ``mobileface align``'s precise YuNet (its fast one
        when ``precise`` is off), so that photos give the crops that ``mobileface align`` writes."""
        if self.detector == "yunet":
            from mobileface.align.detect import FAST_YUNET, PRECISE_YUNET

            chosen = PRECISE_YUNET if self.precise else FAST_YUNET
            out = {k: list(v) if isinstance(v, tuple) else v for k, v in chosen.items()}
            return {**out, "low_light": self.low_light}
        return {}


@dataclass
class Embeddings:
    """The embeddings of a list of images, in order, with what happened to each image."""

    vectors: np.ndarray  # (N, D) float32, L2-normalised; zero rows for unreadable images
    status: list[str]  # OK, NO_FACE or UNREADABLE per image
    reasons: dict[str, str]  # image name -> what went wrong, for every image not OK
    landmarks: np.ndarray  # (N, 5, 2) in the decoded image's pixels; NaN where unknown
    embedded: int = 0  # images run through the model in this call (cache misses)
    from_cache: int = 0
    names: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.status if s != OK)

    def count(self, status: str) -> int:
        return sum(1 for s in self.status if s == status)


def open_detector(name: str, **kwargs: Any) -> Any:
    """The named face detector; an unknown name is a user error."""
    from mobileface.align import create_detector

    try:
        return create_detector(name, **kwargs)
    except ValueError as exc:
        raise DataFormatError(f"--detector: {exc}") from None


def centre_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The documented no-face fallback (:func:`mobileface.align.template.center_crop`): the crop
    an aligned face would give if it sat where faces sit in face-centred photos such as LFW's."""
    from mobileface.align.template import center_crop

    return center_crop(image, size)


def fit_crop(crop: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An aligned crop brought to the model's input ``size``: a 112x112 crop for a 112x96
    model loses 8 columns each side (the two templates differ by exactly that); any other
    mismatch is a resize."""
    h, w = crop.shape[:2]
    if h == size[0] and w > size[1] and (w - size[1]) % 2 == 0:
        left = (w - size[1]) // 2
        return np.ascontiguousarray(crop[:, left : left + size[1]])
    return _resize(crop, size)


def _resize(image: np.ndarray, size: tuple[int, int], cv2=None) -> np.ndarray:
    if tuple(image.shape[:2]) == tuple(size):
        return np.ascontiguousarray(image)
    if cv2 is None:
        import cv2
    h, w = size
    shrink = image.shape[0] > h or image.shape[1] > w
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp)


def _pad_for_detection(crop: np.ndarray) -> tuple[np.ndarray, int]:
    """Aligned crops fill the frame; detectors find faces more reliably with a border."""
    import cv2

    pad = crop.shape[0] // 2
    return cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0), pad


def embed_images(
    sources: Sequence[ImageSource],
    embedder: Any,
    options: EmbedOptions,
    *,
    model_key: Any,
    cache: EmbeddingCache | None = None,
    detector: Any = None,
    progress: bool | None = None,
    describe: str = "embedding",
) -> Embeddings:
    """Embed every source once (see the module docstring); ``model_key`` identifies the model
    and its input normalisation in the cache (:func:`model_cache_key`)."""
    from tqdm import tqdm

    n = len(sources)
    size = tuple(int(v) for v in embedder.input_size)
    dim = int(embedder.embedding_size)
    vectors = np.zeros((n, dim), dtype=np.float32)
    landmarks = np.full((n, 5, 2), np.nan, dtype=np.float32)
    status = [OK] * n
    reasons: dict[str, str] = {}
    prep = options.key()
    embedded = from_cache = 0
    need_detector = not options.aligned or options.landmarks
    from mobileface.align.lighting import normalise_crop

    if need_detector and detector is None:
        detector = open_detector(options.detector, **options.detector_options())

    bar = tqdm(
        total=n, desc=describe, unit="img", disable=None if progress is None else not progress
    )
    try:
        for start in range(0, n, options.batch_size):
            chunk = range(start, min(start + options.batch_size, n))
            keys: dict[int, str] = {}
            raw: dict[int, bytes] = {}
            for i in chunk:
                try:
                    raw[i] = sources[i].read()
                except FileNotFoundError:
                    status[i] = UNREADABLE
                    reasons[sources[i].name] = "missing: no such file"
                    continue
                except OSError as exc:
                    status[i] = UNREADABLE
                    reasons[sources[i].name] = f"cannot read: {exc.strerror or exc}"
                    continue
                keys[i] = make_key("embedding", model_key, prep, sha256_bytes(raw[i]))
            hits = cache.get_many(keys.values()) if cache is not None else {}
            todo: list[int] = []
            for i, key in keys.items():
                if key in hits:
                    vec, meta = hits[key]
                    if vec.shape == (dim,):
                        _apply(i, vec, meta, vectors, landmarks, status, reasons, sources)
                        from_cache += 1
                        continue
                todo.append(i)
            crops, crop_index, metas = [], [], {}
            for i in todo:
                crop, meta = _make_crop(sources[i], raw[i], options, size, detector)
                if crop is not None and options.crop_norm:
                    crop = normalise_crop(crop)
                metas[i] = meta
                if crop is None:
                    _apply(i, None, meta, vectors, landmarks, status, reasons, sources)
                    continue
                crops.append(crop)
                crop_index.append(i)
            if crops:
                batch = np.stack(crops)
                emb = np.asarray(embedder.embed(batch), dtype=np.float32)
                if options.flip:
                    emb = emb + np.asarray(embedder.embed(batch[:, :, ::-1]), dtype=np.float32)
                norms = np.linalg.norm(emb, axis=1, keepdims=True)
                emb = emb / np.maximum(norms, 1e-12)
                embedded += len(crops)
                stored = []
                for row, i in enumerate(crop_index):
                    _apply(i, emb[row], metas[i], vectors, landmarks, status, reasons, sources)
                    stored.append((keys[i], emb[row], metas[i]))
                if cache is not None:
                    cache.put_many(stored)
            bar.update(len(chunk))
    finally:
        bar.close()
    return Embeddings(
        vectors, status, reasons, landmarks, embedded, from_cache, [s.name for s in sources]
    )


def _apply(i, vec, meta, vectors, landmarks, status, reasons, sources) -> None:
    if vec is not None:
        vectors[i] = vec
    status[i] = meta.get("status", OK)
    if meta.get("reason"):
        reasons[sources[i].name] = meta["reason"]
    if meta.get("landmarks") is not None:
        landmarks[i] = np.asarray(meta["landmarks"], dtype=np.float32).reshape(5, 2)


def _make_crop(
    source: ImageSource, data: bytes, options: EmbedOptions, size: tuple[int, int], detector
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The crop to embed and what to remember about it (status, reason, landmarks)."""
    from mobileface.errors import NoFaceError
    from mobileface.image import load_image

    try:
        image = load_image(data, name=source.name)
    except MobileFaceError as exc:
        return None, {"status": UNREADABLE, "reason": str(exc)}
    if options.aligned:
        crop = fit_crop(image, size)
        meta: dict[str, Any] = {"status": OK}
        if options.landmarks:
            padded, pad = _pad_for_detection(crop)
            faces = detector.detect(padded)
            if faces:
                face = max(faces, key=lambda f: float(f.score))
                meta["landmarks"] = (np.asarray(face.landmarks, np.float64) - pad).tolist()
        return crop, meta
    from mobileface.align import align_image

    try:
        crop, face = align_image(image, detector, size=size, policy=options.policy)
    except NoFaceError:
        return centre_crop(image, size), {
            "status": NO_FACE,
            "reason": "no face found: centre crop used",
        }
    return crop, {"status": OK, "landmarks": np.asarray(face.landmarks, np.float64).tolist()}


def model_cache_key(embedder: Any, model_file: str | Path | None, spec: str) -> dict[str, Any]:
    """What identifies a model's embeddings: its file's SHA-256 and its input preprocessing."""
    from .cache import sha256_file

    digest = getattr(embedder, "sha256", None)
    if not isinstance(digest, str):
        digest = sha256_file(model_file) if model_file and Path(model_file).is_file() else None
    norm = getattr(embedder, "normalization", None)
    return {
        "model_sha256": digest or f"spec:{spec}",
        "input_size": [int(v) for v in embedder.input_size],
        "normalization": norm.to_dict() if hasattr(norm, "to_dict") else repr(norm),
    }
