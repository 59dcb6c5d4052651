"""Align every image under a folder into another: the work behind ``mobileface align``.

- Each image ``SRC/a/b/name.jpg`` becomes ``DST/a/b/name.png`` (same relative path and stem;
  PNG is lossless, so the crop is exactly what the warp produced; JPEG on request).
- Work already done is skipped: an output that exists is never redone, so an interrupted run
  resumes where it stopped. Crops are written to a temporary file and renamed, so an output
  that exists is complete.
- Images that cannot be aligned are listed in ``DST/align_manifest.jsonl``, one JSON object a
  line: ``{"path", "output", "status", "reason"}`` with ``status`` ``failed`` (no crop) or
  ``fallback`` (a centre crop was written because no face was found; see ``fallback``).
  Failed images are tried again on the next run; fallback entries are kept while their crop
  exists.
- ``DST/align_settings.json`` records detector, size, policy and crop kind; a later run into
  the same DST with other settings is refused rather than mixing two alignments.
- With ``workers > 1`` each worker process builds its own detector.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, ImageError, NoFaceError
from ..image import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, load_image, save_image
from .face import DEFAULT_POLICY, POLICIES, select_face
from .template import align_face, center_crop, loose_crop, template_for

MANIFEST_NAME = "align_manifest.jsonl"
SETTINGS_NAME = "align_settings.json"
FALLBACKS = ("none", "center")
OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg"}
LOOSE_SIZE = (113, 113)


@dataclass(frozen=True)
class AlignOptions:
    """How to turn one image into one crop (picklable: sent to every worker)."""

    detector: str = "yunet"
    detector_kwargs: dict = field(default_factory=dict)
    size: tuple[int, int] = (112, 112)
    policy: str = DEFAULT_POLICY
    loose: bool = False
    fallback: str = "none"
    output_format: str = "png"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def settings(self) -> dict:
        """What decides the crops' content (compared between runs into one DST)."""
        kind = "loose" if self.loose else "template"
        options = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in sorted(self.detector_kwargs.items())
            if k != "model_path"
        }
        out = {
            "detector": self.detector,
            "detector_options": options,
            "size": list(self.size),
            "policy": self.policy,
            "crop": kind,
            "interpolation": "cubic",
            "format": self.output_format,
        }
        if not self.loose:
            out["template"] = np.round(template_for(self.size).astype(np.float64), 4).tolist()
        return out


@dataclass(frozen=True)
class AlignRecord:
    """The outcome for one source image (paths relative to SRC and DST, POSIX style)."""

    path: str
    output: str | None
    status: str  # aligned | skipped | fallback | failed
    reason: str = ""


@dataclass
class AlignReport:
    """What a run did; ``problems`` holds the manifest's entries (failed and fallback)."""

    src: Path
    dst: Path
    total: int = 0
    aligned: int = 0
    skipped: int = 0
    fallback: int = 0
    failed: int = 0
    ignored: int = 0
    seconds: float = 0.0
    workers: int = 1
    failed_this_run: int = 0
    problems: list[AlignRecord] = field(default_factory=list)

    @property
    def manifest(self) -> Path:
        return self.dst / MANIFEST_NAME

    @property
    def lost_fraction(self) -> float:
        """Fraction of source images with no crop at all."""
        return self.failed / self.total if self.total else 0.0

    @property
    def images_per_second(self) -> float:
        """Throughput over the images processed in this run (skipped ones excluded)."""
        done = self.aligned + self.fallback + self.failed_this_run
        return done / self.seconds if self.seconds > 0 else 0.0

    def reasons(self) -> Counter:
        return Counter(_reason_kind(r.reason) for r in self.problems if r.status == "failed")


def align_directory(
    src: str | Path,
    dst: str | Path,
    *,
    detector: str = "yunet",
    detector_kwargs: dict | None = None,
    size: tuple[int, int] | None = None,
    policy: str = DEFAULT_POLICY,
    loose: bool = False,
    fallback: str = "none",
    workers: int = 1,
    output_format: str = "png",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precise: bool = True,
    progress: bool = True,
) -> AlignReport:
    """Align every image under ``src`` into ``dst``; see the module docstring.

    YuNet runs with :data:`~mobileface.align.detect.PRECISE_YUNET` (``precise``, default)
    or :data:`~mobileface.align.detect.FAST_YUNET`; ``detector_kwargs`` override them (see
    :func:`resolve_detector_kwargs`).

    ``size`` defaults to 112x112 (113x113 with ``loose``). ``fallback="center"`` writes
    :func:`~mobileface.align.template.center_crop` for images where no face is found (right for
    face-centred benchmark crops such as LFW's) and lists them in the manifest.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise DataFormatError(f"{src}: not a directory")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    if fallback not in FALLBACKS:
        raise ValueError(f"unknown fallback {fallback!r}; choose from {', '.join(FALLBACKS)}")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}")
    workers = max(1, int(workers))
    if size is None:
        size = LOOSE_SIZE if loose else (112, 112)
    template_for(size)  # validates the size
    from .detect import create_detector

    kwargs = resolve_detector_kwargs(detector, detector_kwargs, precise=precise)
    options = AlignOptions(
        detector=detector,
        detector_kwargs=kwargs,
        size=(int(size[0]), int(size[1])),
        policy=policy,
        loose=loose,
        fallback=fallback,
        output_format=output_format,
        max_pixels=max_pixels,
    )

    # Build one detector here: a missing model fails now, once, with a clear message, and a
    # model file that has to be fetched is fetched once, not by every worker.
    local_detector = create_detector(detector, **options.detector_kwargs)
    worker_kwargs = dict(options.detector_kwargs)
    model_path = getattr(local_detector, "model_path", None)
    if model_path is not None and "model_path" not in worker_kwargs:
        worker_kwargs["model_path"] = str(model_path)

    dst.mkdir(parents=True, exist_ok=True)
    _check_settings(dst, options)
    sources, ignored = _list_sources(src, dst)
    ext = OUTPUT_FORMATS[output_format]
    report = AlignReport(src=src, dst=dst, total=len(sources), ignored=ignored, workers=workers)
    _remove_stale_temp_files(dst)

    kept = _previous_fallbacks(dst, src)
    todo: list[tuple[str, str, str]] = []
    owners: dict[str, str] = {}
    collisions: list[AlignRecord] = []
    for rel in sources:
        out_rel = Path(rel).with_suffix(ext).as_posix()
        if out_rel in owners:
            collisions.append(
                AlignRecord(
                    rel,
                    None,
                    "failed",
                    f"{rel}: output {out_rel} is already taken by {owners[out_rel]} "
                    "(same folder and stem)",
                )
            )
            continue
        owners[out_rel] = rel
        if (dst / out_rel).is_file():
            report.skipped += 1
            if rel in kept:
                report.fallback += 1
                report.problems.append(kept[rel])
            continue
        todo.append((str(src / rel), rel, str(dst / out_rel)))
    report.skipped -= report.fallback  # count earlier fallbacks as fallbacks, not as skipped

    manifest = dst / MANIFEST_NAME
    _write_atomic(manifest, "".join(json.dumps(asdict(r)) + "\n" for r in report.problems).encode())
    start = time.perf_counter()
    with open(manifest, "a", encoding="utf-8") as log:

        def note(record: AlignRecord) -> None:
            if record.status == "aligned":
                report.aligned += 1
                return
            if record.status == "fallback":
                report.fallback += 1
            else:
                report.failed += 1
                report.failed_this_run += 1
            report.problems.append(record)
            log.write(json.dumps(asdict(record)) + "\n")
            log.flush()

        for record in collisions:
            note(record)
        bar = _progress(len(sources), report.skipped + report.fallback, progress)
        try:
            if workers == 1 or len(todo) <= 1:
                for task in todo:
                    note(_align_task(task, options, local_detector))
                    bar.update(1)
            else:
                del local_detector
                worker_options = replace(options, detector_kwargs=worker_kwargs)
                ctx = multiprocessing.get_context("spawn")
                chunk = max(1, min(16, len(todo) // (workers * 8)))
                with ctx.Pool(workers, _init_worker, (worker_options,)) as pool:
                    for record in pool.imap_unordered(_worker_task, todo, chunksize=chunk):
                        note(record)
                        bar.update(1)
        finally:
            bar.close()
            report.seconds = time.perf_counter() - start
    report.problems.sort(key=lambda r: r.path)
    return report


def resolve_detector_kwargs(
    detector: str, detector_kwargs: dict | None = None, *, precise: bool = True
) -> dict:
    """The detector's keyword arguments ``align_directory`` uses: for YuNet,
    :data:`~mobileface.align.detect.PRECISE_YUNET` (``precise``) or ``FAST_YUNET``, with
    ``detector_kwargs`` over them. Both name the landmark pass, so ``align_settings.json``
    tells crops of one landmark pass from another's."""
    kwargs = dict(detector_kwargs or {})
    if detector != "yunet":
        return kwargs
    from .detect import FAST_YUNET, PRECISE_YUNET

    return {**(PRECISE_YUNET if precise else FAST_YUNET), **kwargs}


def align_file(
    path: str | Path,
    detector,
    options: AlignOptions,
    *,
    name: str | None = None,
) -> tuple[np.ndarray, str, str]:
    """Load ``path`` and return ``(crop, status, reason)``; status ``aligned`` or ``fallback``.

    Raises :class:`ImageError` for unreadable images and :class:`NoFaceError` when no face is
    found and ``options.fallback`` is ``none``.
    """
    image = load_image(path, max_pixels=options.max_pixels, name=name)
    faces = detector.detect(image)
    if not faces:
        if options.fallback == "center":
            return _center_fallback(image, options), "fallback", "no face detected: centre crop"
        raise NoFaceError(f"{name or path}: no face detected by {detector.name}")
    face = select_face(faces, options.policy, image.shape)
    if options.loose:
        return loose_crop(image, face.box, options.size), "aligned", ""
    return align_face(image, face.landmarks, options.size), "aligned", ""


def _center_fallback(image: np.ndarray, options: AlignOptions) -> np.ndarray:
    if not options.loose:
        return center_crop(image, options.size)
    # The face box of a face-centred crop like LFW's: centred, 1/2.2 of the frame.
    h, w = image.shape[:2]
    half = min(h, w) / 2.2 / 2.0
    box = np.array([w / 2 - half, h / 2 - half, w / 2 + half, h / 2 + half])
    return loose_crop(image, box, options.size)


def _align_task(task: tuple[str, str, str], options: AlignOptions, detector) -> AlignRecord:
    source, rel, output = task
    out_rel = Path(rel).with_suffix(OUTPUT_FORMATS[options.output_format]).as_posix()
    try:
        crop, status, reason = align_file(source, detector, options, name=rel)
        save_image(output, crop)
        return AlignRecord(rel, out_rel, status, reason)
    except (ImageError, NoFaceError) as exc:
        return AlignRecord(rel, None, "failed", str(exc))
    except Exception as exc:  # one bad image must not stop a batch of thousands
        return AlignRecord(rel, None, "failed", f"{rel}: {type(exc).__name__}: {exc}")


_WORKER: dict = {}


def _init_worker(options: AlignOptions) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would oversubscribe
    _WORKER["options"] = options
    try:
        from .detect import create_detector

        _WORKER["detector"] = create_detector(options.detector, **options.detector_kwargs)
    except Exception as exc:  # reported per image; raising here would hang the pool
        _WORKER["error"] = f"{type(exc).__name__}: {exc}"


def _worker_task(task: tuple[str, str, str]) -> AlignRecord:
    if "error" in _WORKER:
        return AlignRecord(task[1], None, "failed", f"detector unavailable: {_WORKER['error']}")
    return _align_task(task, _WORKER["options"], _WORKER["detector"])


def _list_sources(src: Path, dst: Path) -> tuple[list[str], int]:
    """Image files under ``src`` (relative POSIX paths, sorted) and the count of other files.

    Hidden files and folders are skipped, and so is ``dst`` if it lies inside ``src``.
    """
    found: list[str] = []
    ignored = 0
    for root, dirs, files in os.walk(src):
        root_path = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (root_path / d).resolve() != dst
        )
        for name in files:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append((root_path / name).relative_to(src).as_posix())
            else:
                ignored += 1
    found.sort()
    return found, ignored


def _check_settings(dst: Path, options: AlignOptions) -> None:
    path = dst / SETTINGS_NAME
    wanted = options.settings()
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}: unreadable settings of an earlier run: {exc}") from None
        if previous != wanted:
            keys = [
                k for k in sorted(set(previous) | set(wanted)) if previous.get(k) != wanted.get(k)
            ]
            if len(keys) > 1 and "template" in keys:
                keys.remove("template")  # follows from the size
            diff = ", ".join(f"{k}: {previous.get(k)!r} then, {wanted.get(k)!r} now" for k in keys)
            raise DataFormatError(
                f"{dst} holds crops made with other settings ({diff}); "
                "align into another folder, or delete it to start over"
            )
        return
    _write_atomic(path, (json.dumps(wanted, indent=2) + "\n").encode())


def _previous_fallbacks(dst: Path, src: Path) -> dict[str, AlignRecord]:
    """Fallback entries of earlier runs whose crop still exists (failed ones are retried)."""
    path = dst / MANIFEST_NAME
    kept: dict[str, AlignRecord] = {}
    if not path.is_file():
        return kept
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = AlignRecord(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut short by an interrupted run
        if (
            record.status == "fallback"
            and record.output
            and (dst / record.output).is_file()
            and (src / record.path).is_file()
        ):
            kept[record.path] = record
    return kept


def _remove_stale_temp_files(dst: Path) -> None:
    for root, _, files in os.walk(dst):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(root, name))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="img",
        desc="align",
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _reason_kind(reason: str) -> str:
    """The reason without the file name, for counting: ``"a/b.jpg: truncated ..."`` ->
    ``"truncated ..."`` (cut at the first parenthesis or colon after the file)."""
    text = reason.split(": ", 1)[1] if ": " in reason else reason
    for sep in (" (", ": "):
        text = text.split(sep, 1)[0]
    return text
