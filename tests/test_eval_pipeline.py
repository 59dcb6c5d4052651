"""The verification pipeline with a stand-in model: unique images, flip, cache, failures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mobileface.align import ARCFACE_TEMPLATE_112, Face
from mobileface.evaluation.cache import EmbeddingCache
from mobileface.evaluation.pipeline import NO_FACE, OK, UNREADABLE, EmbedOptions
from mobileface.evaluation.verification import (
    UNSCORABLE,
    evaluate_verification,
    pairs_from_list,
)
from mobileface.image import save_image

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]


class FakeEmbedder:
    """Colour means, plus a left-minus-right term that a mirror image cancels."""

    name = "fake"
    input_size = (112, 112)
    embedding_size = 4
    normalization = "fake"

    def __init__(self) -> None:
        self.images = 0

    def embed(self, crops: np.ndarray) -> np.ndarray:
        x = np.asarray(crops, dtype=np.float32)
        assert x.ndim == 4 and x.shape[1:] == (112, 112, 3)
        self.images += len(x)
        mean = x.mean(axis=(1, 2)) / 255.0 - 0.4
        tilt = (x[:, :, :56].mean(axis=(1, 2, 3)) - x[:, :, 56:].mean(axis=(1, 2, 3))) / 255.0
        return np.concatenate([mean, tilt[:, None]], axis=1)


class StubDetector:
    """Finds a face at the template position, except in images listed as faceless."""

    name = "stub"

    def __init__(self, faceless: set[int]) -> None:
        self.faceless = faceless  # image widths that mean "no face here"

    def detect(self, image: np.ndarray) -> list[Face]:
        if image.shape[1] in self.faceless:
            return []
        lm = ARCFACE_TEMPLATE_112 * (image.shape[0] / 112)
        return [Face(np.array([0, 0, image.shape[1], image.shape[0]]), 0.9, lm)]


@dataclass
class P:
    image_a: Path
    image_b: Path
    same: bool
    fold: int


def make_images(root: Path, size=(112, 112), per_id: int = 3) -> dict[int, list[Path]]:
    rng = np.random.default_rng(0)
    out: dict[int, list[Path]] = {}
    for ident, colour in enumerate(COLOURS):
        for k in range(per_id):
            img = np.clip(
                np.array(colour, np.float32) + rng.normal(0, 8, (*size, 3)), 0, 255
            ).astype(np.uint8)
            img[:, : size[1] // 3] //= 2  # darker left third: a mirror changes the embedding
            path = root / f"person{ident}" / f"person{ident}_{k:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(path, img)
            out.setdefault(ident, []).append(path)
    return out


def make_pairs(images: dict[int, list[Path]]) -> list[P]:
    pairs = []
    for fold in range(2):
        for ident in range(4):
            a, b, c = images[ident]
            other = images[(ident + 1 + fold) % 4][fold]
            pairs.append(P(a, b if fold == 0 else c, True, fold))
            pairs.append(P(a, other, False, fold))
    return pairs


def test_pairs_embed_each_unique_image_once(tmp_path) -> None:
    images = make_images(tmp_path)
    pair_set = pairs_from_list(make_pairs(images), tmp_path, "toy")
    assert len(pair_set) == 16
    model = FakeEmbedder()
    run = evaluate_verification(
        pair_set, model, EmbedOptions(aligned=True), model_key="fake", progress=False
    )
    n_unique = len({p for pair in make_pairs(images) for p in (pair.image_a, pair.image_b)})
    assert len(pair_set.sources) == n_unique and model.images == n_unique
    assert run.metrics.accuracy == 1.0 and run.metrics.auc == 1.0
    d = run.to_dict()
    for key in ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far", "threshold", "pairs"):
        assert key in d
    assert d["failed_images"] == 0 and d["pairs"] == 16 and d["embedded_images"] == n_unique
    assert pair_set.sources[0].name.startswith("person")  # named relative to the image folder
    norms = np.linalg.norm(run.embeddings.vectors, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_flip_sums_the_mirror_embedding(tmp_path) -> None:
    images = make_images(tmp_path)
    pair_set = pairs_from_list(make_pairs(images), tmp_path)
    model = FakeEmbedder()
    plain = evaluate_verification(
        pair_set, model, EmbedOptions(aligned=True), model_key="f", progress=False
    )
    flipped = evaluate_verification(
        pair_set, model, EmbedOptions(aligned=True, flip=True), model_key="f", progress=False
    )
    assert model.images == 3 * len(pair_set.sources)  # crop, then crop and mirror
    assert np.abs(plain.embeddings.vectors[:, 3]).min() > 0.01
    np.testing.assert_allclose(flipped.embeddings.vectors[:, 3], 0.0, atol=1e-6)
    # The other components are those of the unflipped run, rescaled by normalisation.
    a, b = plain.embeddings.vectors[:, :3], flipped.embeddings.vectors[:, :3]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)


def test_cache_makes_the_second_run_cheap(tmp_path) -> None:
    images = make_images(tmp_path / "img")
    pair_set = pairs_from_list(make_pairs(images), tmp_path / "img")
    n = len(pair_set.sources)
    opts = EmbedOptions(aligned=True, flip=True)
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        first_model = FakeEmbedder()
        first = evaluate_verification(
            pair_set, first_model, opts, model_key="m1", cache=cache, progress=False
        )
        again_model = FakeEmbedder()
        again = evaluate_verification(
            pair_set, again_model, opts, model_key="m1", cache=cache, progress=False
        )
        assert (first.embeddings.embedded, first.embeddings.from_cache) == (n, 0)
        assert (again.embeddings.embedded, again.embeddings.from_cache) == (0, n)
        assert again_model.images == 0
        np.testing.assert_array_equal(first.scores, again.scores)
        # Another model, or other preprocessing, is never served these entries.
        other = evaluate_verification(
            pair_set, FakeEmbedder(), opts, model_key="m2", cache=cache, progress=False
        )
        assert other.embeddings.embedded == n
        noflip = EmbedOptions(aligned=True)
        other = evaluate_verification(
            pair_set, FakeEmbedder(), noflip, model_key="m1", cache=cache, progress=False
        )
        assert other.embeddings.embedded == n


def test_unreadable_images_are_counted_and_their_pairs_kept(tmp_path) -> None:
    images = make_images(tmp_path)
    pairs = make_pairs(images)
    broken = images[0][0]
    broken.write_bytes(b"not an image at all")
    missing = images[2][1]
    pair_set = pairs_from_list(pairs, tmp_path)
    missing.unlink()  # vanished after the pair list was read
    run = evaluate_verification(
        pair_set, FakeEmbedder(), EmbedOptions(aligned=True), model_key="f", progress=False
    )
    e = run.embeddings
    assert e.count(UNREADABLE) == 2 and e.failed == 2
    names = set(run.failures())
    assert str(broken.relative_to(tmp_path)) in names
    assert str(missing.relative_to(tmp_path)) in names
    hit = [i for i, p in enumerate(pairs) if broken in (p.image_a, p.image_b)]
    hit += [i for i, p in enumerate(pairs) if missing in (p.image_a, p.image_b)]
    assert run.unscorable_pairs == len(set(hit)) > 0
    assert all(run.scores[i] == UNSCORABLE for i in hit)
    assert run.metrics.pairs == len(pairs)  # nothing dropped
    d = run.to_dict()
    assert d["unreadable_images"] == 2 and d["unscorable_pairs"] == run.unscorable_pairs


def test_photos_without_a_face_use_the_centre_crop(tmp_path) -> None:
    images = make_images(tmp_path, size=(150, 150))
    faceless = tmp_path / "person1" / "person1_0001.png"
    img = np.full((150, 149, 3), 90, np.uint8)  # width 149: the stub finds no face here
    save_image(faceless, img)
    pair_set = pairs_from_list(make_pairs(images), tmp_path)
    run = evaluate_verification(
        pair_set,
        FakeEmbedder(),
        EmbedOptions(aligned=False, detector="stub", landmarks=True),
        model_key="f",
        detector=StubDetector({149}),
        pose=True,
        progress=False,
    )
    e = run.embeddings
    assert e.count(NO_FACE) == 1 and e.count(OK) == len(e.status) - 1
    i = e.names.index(str(faceless.relative_to(tmp_path)))
    assert np.linalg.norm(e.vectors[i]) == pytest.approx(1.0)  # embedded, not dropped
    assert "centre crop" in e.reasons[e.names[i]]
    assert np.isnan(e.landmarks[i]).all()
    assert not np.isnan(np.delete(e.landmarks, i, axis=0)).any()
    pose = run.pose
    assert pose["images_with_yaw"] == len(e.status) - 1
    assert pose["pairs_without_pose"] >= 1
    assert pose["bins"]["frontal-frontal"]["same_pairs"] > 0
    assert run.to_dict()["no_face_images"] == 1


def test_crops_are_fitted_to_the_model_input() -> None:
    from mobileface.evaluation.pipeline import fit_crop

    crop = np.arange(112 * 112 * 3, dtype=np.uint32).reshape(112, 112, 3).astype(np.uint8)
    narrow = fit_crop(crop, (112, 96))  # the 112x96 template is 112x112 less 8 px a side
    np.testing.assert_array_equal(narrow, crop[:, 8:104])
    assert fit_crop(crop, (96, 96)).shape == (96, 96, 3)
    assert fit_crop(crop, (112, 112)) is not None


def test_cache_key_follows_what_changes_the_embedding() -> None:
    photos = EmbedOptions(aligned=False, flip=True)
    assert photos.key() == EmbedOptions(aligned=False, flip=True, landmarks=True).key()
    assert photos.key() != EmbedOptions(aligned=False, flip=True, policy="central").key()
    assert photos.key() != EmbedOptions(aligned=False, flip=True, precise=False).key()
    assert photos.key()["detector_options"]["landmarks"] == "onet"
    crops = EmbedOptions(aligned=True, flip=True)
    assert crops.key() == EmbedOptions(aligned=True, flip=True, policy="central").key()
    assert crops.key() != EmbedOptions(aligned=True, flip=True, landmarks=True).key()
