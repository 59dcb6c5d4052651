"""Margin losses against their formulas, and Partial FC sharded over real gloo processes."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mobileface.losses import Margin, PartialFC, SoftmaxHead, apply_margin, target_logit


def direct_arcface_loss(embeddings, weight, labels, s=64.0, m=0.5):
    """ArcFace written out plainly: s * cos(theta + m) for the true class, s * cos otherwise."""
    cos = F.normalize(embeddings) @ F.normalize(weight).T
    theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    one_hot = F.one_hot(labels, weight.shape[0]).bool()
    logits = torch.where(one_hot, torch.cos(theta + m), cos) * s
    return F.cross_entropy(logits, labels)


def test_arcface_matches_the_direct_formula() -> None:
    torch.manual_seed(0)
    weight = torch.randn(10, 8)
    labels = torch.randint(0, 10, (16,))
    emb = weight[labels] + torch.randn(16, 8)  # near their centres: theta + m stays below pi
    head = PartialFC(8, 10, Margin.preset("arcface"))
    head.weight.data = weight.clone()
    torch.testing.assert_close(head(emb, labels), direct_arcface_loss(emb, weight, labels))


def test_cosface_and_sphereface_targets() -> None:
    cos = torch.tensor([0.9, 0.2, -0.3])
    torch.testing.assert_close(target_logit(cos, Margin(64, 1, 0, 0.35)), cos - 0.35)
    theta = torch.acos(cos)
    torch.testing.assert_close(
        target_logit(cos, Margin(64, 1.35, 0, 0)), torch.cos(1.35 * theta), atol=1e-5, rtol=0
    )


def test_target_is_monotone_and_continuous_past_pi() -> None:
    """cos(theta + m) turns back up after pi; the fallback keeps the target decreasing."""
    theta = torch.linspace(0, math.pi, 2001)
    for margin in (Margin.preset("arcface"), Margin(64, 1.35, 0, 0), Margin(64, 1, 0.3, 0.2)):
        target = target_logit(torch.cos(theta), margin)
        steps = target[1:] - target[:-1]
        assert (steps <= 1e-6).all(), margin
        assert steps.abs().max() < 0.02, f"jump in {margin}"


def test_margin_gradients_stay_finite_at_the_extremes() -> None:
    cos = torch.tensor([1.0, -1.0, 0.999999, -0.999999], requires_grad=True)
    target_logit(cos, Margin.preset("arcface")).sum().backward()
    assert torch.isfinite(cos.grad).all()


def test_apply_margin_touches_only_the_true_class_and_skips_ignored_rows() -> None:
    cos = torch.full((3, 4), 0.5)
    logits = apply_margin(cos, torch.tensor([1, -1, 3]), Margin(10, 1, 0, 0.2))
    expected = torch.full((3, 4), 5.0)
    expected[0, 1] = expected[2, 3] = 3.0
    torch.testing.assert_close(logits, expected)


def test_softmax_head_is_a_plain_classifier() -> None:
    torch.manual_seed(0)
    head = SoftmaxHead(8, 5)
    emb, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(head(emb, labels), F.cross_entropy(head.fc(emb), labels))


def test_sampling_keeps_the_batch_classes() -> None:
    torch.manual_seed(0)
    head = PartialFC(8, 100, sample_rate=0.1).train()
    labels = torch.tensor([3, 50, 99, 3])
    weight, mapped = head._sample(labels)
    assert weight.shape[0] == 10
    for original, new in zip(labels.tolist(), mapped.tolist(), strict=True):
        torch.testing.assert_close(weight[new], head.weight[original])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sharded_worker(rank, world, port, emb, weight, labels, sample_rate, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(123)
        head = PartialFC(emb.shape[1], weight.shape[0], Margin.preset("arcface"), sample_rate)
        head.weight.data = weight[head.class_start : head.class_start + head.num_local].clone()
        per_rank = emb.shape[0] // world
        local = emb[rank * per_rank : (rank + 1) * per_rank].clone().requires_grad_()
        loss = head(local, labels[rank * per_rank : (rank + 1) * per_rank])
        loss.backward()
        out[rank] = {"loss": loss.detach(), "emb_grad": local.grad, "weight_grad": head.weight.grad,
                     "start": head.class_start}  # fmt: skip
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_sharded_partial_fc_equals_the_unsharded_loss_and_gradients() -> None:
    torch.manual_seed(0)
    emb, weight = torch.randn(8, 16), torch.randn(11, 16)  # 11 classes: uneven shards
    labels = torch.tensor([0, 10, 5, 6, 1, 7, 10, 2])
    full_emb = emb.clone().requires_grad_()
    head = PartialFC(16, 11, Margin.preset("arcface"))
    head.weight.data = weight.clone()
    loss = head(full_emb, labels)
    loss.backward()

    out = mp.Manager().dict()
    mp.spawn(_sharded_worker, args=(2, _free_port(), emb, weight, labels, 1.0, out), nprocs=2)
    for rank in range(2):
        result = out[rank]
        torch.testing.assert_close(result["loss"], loss.detach())
        torch.testing.assert_close(result["emb_grad"], full_emb.grad[rank * 4 : (rank + 1) * 4])
        start, n = result["start"], result["weight_grad"].shape[0]
        torch.testing.assert_close(result["weight_grad"], head.weight.grad[start : start + n])
