"""Class centres for margin losses, sharded across ranks (Partial FC, An et al. 2021).

Each rank holds ``1 / world_size`` of the class centres. Embeddings and labels of the whole
global batch are gathered, every rank computes cosines against its own shard only (optionally
a random sample of it that always keeps the classes present in the batch), and the softmax
cross-entropy is assembled across ranks with two all-reduces (maximum and sum). Memory for the
classifier therefore scales with ``classes / world_size``, which is how millions of identities
fit. With one process it is an ordinary normalised classifier.

Every rank computes the loss of the *global* batch, and the gradient that reaches a rank's
embeddings is the full gradient of that loss. The backbone's gradients must therefore be
summed over ranks, not averaged: the trainer registers :func:`sum_gradients_hook` on its
DistributedDataParallel wrapper, which makes N processes exactly equivalent to one process
with the same global batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .margin import Margin, apply_margin


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _AllGather(torch.autograd.Function):
    """All-gather whose backward sums the gradients of every rank and keeps this rank's part."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([g.contiguous() for g in grads])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[dist.get_rank()]


def gather_batch(
    embeddings: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate embeddings (differentiably) and labels of every rank."""
    _, world = _world()
    if world == 1:
        return embeddings, labels
    gathered = torch.cat(_AllGather.apply(embeddings), 0)
    parts = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(parts, labels.contiguous())
    return gathered, torch.cat(parts, 0)


class _DistributedCrossEntropy(torch.autograd.Function):
    """Cross-entropy over logits whose class axis is split across ranks.

    ``labels`` hold local column indices, or -1 where the true class lives on another rank.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        row_max = logits.max(dim=1, keepdim=True).values
        if dist.is_initialized():
            dist.all_reduce(row_max, op=dist.ReduceOp.MAX)
        exp = torch.exp(logits - row_max)
        denom = exp.sum(dim=1, keepdim=True)
        if dist.is_initialized():
            dist.all_reduce(denom, op=dist.ReduceOp.SUM)
        probs = exp / denom
        owned = labels != -1
        target_prob = torch.zeros(logits.shape[0], 1, dtype=logits.dtype, device=logits.device)
        target_prob[owned] = probs[owned].gather(1, labels[owned].unsqueeze(1))
        if dist.is_initialized():
            dist.all_reduce(target_prob, op=dist.ReduceOp.SUM)
        ctx.save_for_backward(probs, labels)
        return -torch.log(target_prob.clamp_min(1e-30)).mean()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        probs, labels = ctx.saved_tensors
        grad = probs.clone()
        owned = torch.nonzero(labels != -1, as_tuple=True)[0]
        grad[owned, labels[owned]] -= 1.0
        return grad * (grad_output / probs.shape[0]), None


class PartialFC(nn.Module):
    """Normalised class centres (this rank's shard) and the combined-margin loss.

    Args:
        embedding_size: width of the embeddings.
        num_classes: number of identities over all ranks.
        margin: the combined margin (ArcFace by default).
        sample_rate: fraction of this rank's centres used per step (1.0: all). Classes present
            in the global batch are always kept.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: Margin | None = None,
        sample_rate: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], not {sample_rate}")
        self.rank, self.world_size = _world()
        self.num_classes = num_classes
        self.margin = margin or Margin()
        self.sample_rate = sample_rate
        self.class_start, self.num_local = shard_range(num_classes, self.rank, self.world_size)
        self.weight = nn.Parameter(torch.normal(0, 0.01, (self.num_local, embedding_size)))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of this rank's batch; every rank must call it with the same batch size."""
        embeddings, labels = gather_batch(embeddings, labels)
        local = labels - self.class_start
        in_shard = (local >= 0) & (local < self.num_local)
        local = torch.where(in_shard, local, torch.full_like(local, -1))
        weight, local = self._sample(local)
        cosines = F.linear(F.normalize(embeddings.float()), F.normalize(weight.float()))
        logits = apply_margin(cosines, local, self.margin)
        return _DistributedCrossEntropy.apply(logits, local)

    def _sample(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the batch's classes plus random others, remapping labels into the sample."""
        num_sample = math.ceil(self.sample_rate * self.num_local)
        if not self.training or num_sample >= self.num_local:
            return self.weight, local
        positive = torch.unique(local[local != -1])
        score = torch.rand(self.num_local, device=local.device)
        score[positive] = 2.0  # always selected
        index = torch.topk(score, max(num_sample, positive.numel())).indices.sort().values
        remap = torch.full((self.num_local,), -1, dtype=torch.long, device=local.device)
        remap[index] = torch.arange(index.numel(), device=local.device)
        mapped = torch.where(local != -1, remap[local.clamp_min(0)], local)
        return self.weight[index], mapped


def sum_gradients_hook(state, bucket):  # noqa: ANN001  (DDP inspects real annotations)
    """DDP communication hook that sums gradients over ranks instead of averaging them."""
    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return future.then(lambda f: f.value()[0])


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """(first class, number of classes) of ``rank``'s shard: the first ranks take the remainder."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, base + (1 if rank < extra else 0)


class SoftmaxHead(nn.Module):
    """Plain softmax classifier (linear layer with bias, no normalisation), the baseline."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.fc(embeddings.float()), labels)
