"""The training loop: any zoo model, a margin head, one process or many.

``Trainer(config, out_dir).run()`` trains for ``schedule.steps`` optimiser steps. Under
torchrun every process runs the same code: the backbone is wrapped in DistributedDataParallel,
the margin head's class centres are sharded (Partial FC). Checkpoints hold everything needed
to continue exactly: model, head, optimiser, scheduler, gradient scaler, RNG states and step.
"""

from __future__ import annotations

import fnmatch
import json
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mobileface.errors import DataFormatError
from mobileface.losses import Margin, PartialFC, SoftmaxHead, sum_gradients_hook
from mobileface.models import create_model
from mobileface.models.blocks import GDConv
from mobileface.models.checkpoint import (
    atomic_torch_save,
    read_checkpoint,
    save_model_checkpoint,
)

from .config import AugmentConfig, Config, LossConfig, config_to_dict
from .data import FaceDataset, build_loader, build_samples
from .distill import online_teacher
from .distributed import DistInfo, cleanup, setup_distributed
from .schedule import lr_factor

CHECKPOINT_DIR = "checkpoints"
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1 / 128.0


def make_margin(loss: LossConfig) -> Margin:
    """The combined margin a loss config asks for (presets, with explicit m1/m2/m3 on top)."""
    base = Margin.preset("normface" if loss.type == "combined" else loss.type, loss.s)
    return Margin(
        s=loss.s,
        m1=base.m1 if loss.m1 is None else loss.m1,
        m2=base.m2 if loss.m2 is None else loss.m2,
        m3=base.m3 if loss.m3 is None else loss.m3,
    )


def split_weight_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(body, after-GDConv) parameters: MobileFaceNets decay the layers after GDConv more.

    "After" means registered after the model's last GDConv; models without one have none.
    """
    modules = list(model.modules())
    last = max((i for i, m in enumerate(modules) if isinstance(m, GDConv)), default=None)
    if last is None:
        return list(model.parameters()), []
    gdconv_params = {id(p) for p in modules[last].parameters()}
    after = {
        id(p): p
        for m in modules[last + 1 :]
        for p in m.parameters(recurse=False)
        if id(p) not in gdconv_params
    }
    body = [p for p in model.parameters() if id(p) not in after]
    return body, list(after.values())


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _fits(module: nn.Module, state: dict | None) -> bool:
    """Whether ``state`` is a state dict with exactly ``module``'s keys and shapes."""
    own = module.state_dict()
    return (
        isinstance(state, dict)
        and state.keys() == own.keys()
        and all(tuple(state[k].shape) == tuple(v.shape) for k, v in own.items())
    )


def _matches_any(key: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


class Trainer:
    """Builds everything from a :class:`Config` and runs (or resumes) training into ``out_dir``."""

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        resume: bool = False,
        stop_at_step: int | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.stop_at_step = stop_at_step
        self.info: DistInfo = setup_distributed()
        self.step = 0
        self.warm_started: list[str] = []  # what model.init gave besides the model
        self.writer = None
        self.evaluator = None

    # ----------------------------------------------------------------- set-up
    def _build(self) -> None:
        cfg, info = self.config, self.info
        seed_everything(cfg.train.seed + info.rank)
        self.samples = build_samples(cfg.data.datasets)
        model = create_model(cfg.model.name, **cfg.model.kwargs)
        self.image_size = tuple(model.input_size)
        memory = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
        self.model = model.to(info.device, memory_format=memory)
        if cfg.loss.type == "softmax":
            head: nn.Module = SoftmaxHead(model.embedding_size, self.samples.num_classes)
        else:
            head = PartialFC(
                model.embedding_size,
                self.samples.num_classes,
                make_margin(cfg.loss),
                cfg.loss.sample_rate,
            )
        self.head = head.to(info.device)
        body, after = split_weight_decay(self.model)
        groups = [
            {"params": body, "weight_decay": cfg.optim.weight_decay},
            {
                "params": after + list(self.head.parameters()),
                "weight_decay": cfg.optim.head_weight_decay,
            },
        ]
        self.distiller = None
        if cfg.distill is not None:
            from .distill import Distiller

            self.distiller = Distiller(
                cfg.distill, self.samples, self.model.embedding_size, info
            ).to(info.device)
            groups.append(
                {
                    "params": list(self.distiller.parameters()),
                    "weight_decay": cfg.optim.weight_decay,
                }
            )
        if cfg.model.init is not None and not self.resume:
            self._warm_start(cfg.model.init)
        if cfg.optim.name == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, cfg.schedule, cfg.optim.lr)
        )
        use_scaler = cfg.train.precision == "fp16" and info.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=use_scaler)
        self.train_model: nn.Module = self.model
        if info.distributed:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[info.local_rank] if info.device.type == "cuda" else None
            )
            if isinstance(self.head, PartialFC):
                self.train_model.register_comm_hook(None, sum_gradients_hook)
            else:
                self.head = DistributedDataParallel(self.head)
        if cfg.model.compile:
            self.train_model = torch.compile(self.train_model)
        if cfg.eval is not None and info.is_main:
            from .callbacks import VerificationCallback

            self.evaluator = VerificationCallback(cfg.eval, self.image_size)

    def _warm_start(self, path: Path) -> None:
        """Start from the weights of ``model.init``. A training checkpoint of the same data
        (same classes, same teacher) also gives its margin head and distiller: a second
        schedule then continues the first instead of re-learning the class centres.
        ``model.init_skip`` drops matching tensors, so a related architecture (one that
        differs only there) can start from it; the skipped ones keep their fresh values."""
        name, skip = self.config.model.name, self.config.model.init_skip
        state = self._exported_weights(path) if path.suffix == ".onnx" else read_checkpoint(path)
        if state["model_name"] != name and not skip:
            raise DataFormatError(f"model.init: {path} holds a {state['model_name']}, not a {name}")
        weights = {k: v for k, v in state["model"].items() if not _matches_any(k, skip)}
        try:
            result = self.model.load_state_dict(weights, strict=False)
        except RuntimeError as exc:
            raise DataFormatError(f"model.init: {path}: weights do not fit {name}: {exc}") from exc
        missing = [k for k in result.missing_keys if not _matches_any(k, skip)]
        if missing or result.unexpected_keys:
            raise DataFormatError(
                f"model.init: {path} ({state['model_name']}) does not fit {name}: "
                f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        if skip and self.info.is_main:
            dropped = len(state["model"]) - len(weights)
            print(f"model.init: {dropped} tensors skipped ({', '.join(skip)})", flush=True)
        shards = state.get("head_shards")
        if (
            isinstance(shards, list)
            and len(shards) == self.info.world_size
            and _fits(self.head, shards[self.info.rank])
        ):
            self.head.load_state_dict(shards[self.info.rank])
            self.warm_started.append("head")
        if self.distiller is not None and _fits(self.distiller, state.get("distiller")):
            self.distiller.load_state_dict(state["distiller"])
            self.warm_started.append("distiller")
        if self.info.is_main:
            parts = ", ".join(["model", *self.warm_started])
            print(f"model.init: {parts} from {path}", flush=True)

    def _exported_weights(self, path: Path, crops: int = 512) -> dict[str, Any]:
        """``model.init`` from an fp32 ONNX export of ours: its BN-folded weights unfolded into
        the model, with batch-norm statistics measured on the first ``crops`` training crops."""
        from mobileface.export.onnx import read_folded_weights
        from mobileface.models.fold import unfold_batchnorm

        architecture, folded = read_folded_weights(path)
        name = self.config.model.name
        if architecture != name:
            raise DataFormatError(f"model.init: {path} holds a {architecture}, not a {name}")
        loader = FaceDataset(self.samples, self.image_size, AugmentConfig(flip=0), 0)
        count = min(crops, len(self.samples.refs))
        images = torch.from_numpy(np.stack([loader.load(i) for i in range(count)]))
        model = create_model(name, **self.config.model.kwargs)
        try:
            batches = (
                (b.permute(0, 3, 1, 2).float() - PIXEL_MEAN) * PIXEL_SCALE for b in images.split(64)
            )
            unfold_batchnorm(model, folded, batches)
        except (KeyError, RuntimeError) as exc:
            raise DataFormatError(f"model.init: {path}: weights do not fit {name}: {exc}") from None
        return {"model_name": name, "model": model.state_dict()}

    def _autocast(self):
        precision = self.config.train.precision
        if precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.info.device.type, dtype=dtype)

    # ------------------------------------------------------------- checkpoint
    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    def latest_checkpoint(self) -> Path | None:
        files = sorted(self.checkpoint_dir.glob("step_*.pt"))
        return files[-1] if files else None

    def save_checkpoint(self) -> None:
        """Write the full training state (rank 0; Partial FC shards from every rank)."""
        head_state = self.head.state_dict()
        shards = [head_state]
        if self.info.distributed and isinstance(self.head, PartialFC):
            shards = [None] * self.info.world_size
            torch.distributed.all_gather_object(shards, head_state)
        if not self.info.is_main:
            return
        state = {
            "model_name": self.model.model_name,
            "model_kwargs": self.model.model_kwargs,
            "model": self.model.state_dict(),
            "head_shards": shards,
            "distiller": self.distiller.state_dict() if self.distiller else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            "step": self.step,
            "world_size": self.info.world_size,
            "config": config_to_dict(self.config),
        }
        path = self.checkpoint_dir / f"step_{self.step:08d}.pt"
        atomic_torch_save(state, path)
        for old in sorted(self.checkpoint_dir.glob("step_*.pt"))[
            : -self.config.train.keep_checkpoints
        ]:
            old.unlink(missing_ok=True)

    def load_checkpoint(self, path: Path) -> None:
        try:  # tensors and plain containers only: a hostile file cannot run code
            state = torch.load(path, map_location=self.info.device, weights_only=True)
        except Exception as exc:
            raise DataFormatError(f"{path}: unreadable training checkpoint ({exc})") from exc
        if state["world_size"] != self.info.world_size:
            raise DataFormatError(
                f"{path}: written by {state['world_size']} processes, "
                f"resumed with {self.info.world_size}"
            )
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head_shards"][self.info.rank])
        if self.distiller and state.get("distiller"):
            self.distiller.load_state_dict(state["distiller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self._resume_rng = state["rng"]

    # ------------------------------------------------------------------- loop
    def _log(self, record: dict[str, float]) -> None:
        if not self.info.is_main:
            return
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step":
                    self.writer.add_scalar(key, value, record["step"])

    def _prepare_out_dir(self) -> None:
        if not self.info.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.yaml").write_text(
            yaml.safe_dump(config_to_dict(self.config), sort_keys=False)
        )
        if self.config.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self.writer = None
            else:
                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def _to_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW (channels-last memory when configured)."""
        x = images.to(self.info.device, non_blocking=True).permute(0, 3, 1, 2).float()
        x = (x - PIXEL_MEAN) * PIXEL_SCALE
        if self.config.model.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    def train_step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
        mirrored: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One optimiser step; ``targets``: the online teacher's embeddings of ``images``."""
        cfg = self.config
        x = self._to_input(images)
        labels = labels.to(self.info.device)
        with self._autocast():
            embeddings = self.train_model(x)
        loss = torch.zeros((), device=self.info.device)
        record = {}
        if cfg.loss.weight > 0:
            margin = self.head(embeddings.float(), labels)
            record["loss/margin"] = margin.detach()
            loss = loss + cfg.loss.weight * margin
        if self.distiller is not None:
            device = self.info.device
            views = None if mirrored is None else mirrored.to(device)
            online = None if targets is None else targets.to(device)
            distill = self.distiller(embeddings.float(), indices.to(device), views, online)
            record["loss/distill"] = distill.detach()
            loss = loss + cfg.distill.weight * distill
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        record["loss/total"] = loss.detach()
        return {k: float(v) for k, v in record.items()}

    def run(self) -> Path | None:
        """Train to the configured number of steps (or to ``stop_at_step``, checkpointing there
        so that ``resume`` continues exactly); returns the model checkpoint path on rank 0 and
        None on the other ranks."""
        try:
            return self._run()
        finally:
            if self.writer is not None:
                self.writer.close()
            cleanup()

    def _run(self) -> Path | None:
        cfg, info = self.config, self.info
        self._build()
        self._prepare_out_dir()
        self._resume_rng = None
        if self.resume:
            latest = self.latest_checkpoint()
            if latest is None:
                raise DataFormatError(f"--resume: no checkpoint in {self.checkpoint_dir}")
            self.load_checkpoint(latest)
        loader = build_loader(
            cfg.data, self.samples, self.image_size, cfg.optim.batch_size, cfg.train.seed,
            info.rank, info.world_size, self.step, online_teacher(cfg.distill, self.image_size),
        )  # fmt: skip
        batches = iter(loader)  # creating the iterator draws from the RNG: restore after it
        if self._resume_rng is not None:
            _set_rng_state(self._resume_rng)
        total = cfg.schedule.steps
        progress = tqdm(
            total=total,
            initial=self.step,
            disable=not info.is_main,
            unit="step",
            dynamic_ncols=True,
        )
        self.model.train()
        self.head.train()
        window_start, window_images = time.perf_counter(), 0
        stop = min(total, self.stop_at_step or total)
        while self.step < stop:
            images, labels, indices, mirrored, targets = next(batches)
            record = self.train_step(images, labels, indices, mirrored, targets)
            if not math.isfinite(record["loss/total"]):
                raise FloatingPointError(f"loss became {record['loss/total']} at step {self.step}")
            self.step += 1
            window_images += images.shape[0] * info.world_size
            progress.update(1)
            if self.step % cfg.train.log_every == 0 or self.step == total:
                elapsed = time.perf_counter() - window_start
                record.update(step=self.step, lr=self.optimizer.param_groups[0]["lr"])
                record["images_per_second"] = window_images / max(elapsed, 1e-9)
                progress.set_postfix(
                    loss=f"{record['loss/total']:.3f}", img_s=f"{record['images_per_second']:.0f}"
                )
                self._log(record)
                window_start, window_images = time.perf_counter(), 0
            if self.evaluator is not None and (
                self.step % cfg.eval.every == 0 or self.step == total
            ):
                self._log({"step": self.step, **self.evaluator(self.model)})
                self.model.train()
            if self.step % cfg.train.checkpoint_every == 0 or self.step == stop:
                self.save_checkpoint()
        progress.close()
        final = self.out_dir / ("model.pt" if self.step == total else f"model_step{self.step}.pt")
        if info.is_main:
            save_model_checkpoint(
                self.model, final, {"step": self.step, "config": config_to_dict(cfg)}
            )
        return final
