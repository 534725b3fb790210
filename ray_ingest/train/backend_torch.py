"""The PyTorch side of the training loop (Ray Train's ``TorchTrainer``).

A ``DistributedDataParallel`` model (``prepare_model``), channels-last with bf16 autocast on
GPU; augmentation with batched torch ops on the device. Evaluation runs the bare module, never
the DDP wrapper: DDP's first forward under ``no_grad`` broadcasts buffers (a collective), and
the ranks' parts of the validation split can hold different numbers of batches — a rank with
none would never join it. Instead, one broadcast of the buffers before validation, on every
rank alike.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import List, Tuple

import numpy as np

from ray_ingest.format import keys
from ray_ingest.read.decode import is_encoded, labels_of
import ray_ingest.train.checkpoint as checkpoint
from ray_ingest.train.plan import step_uniforms


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 0 at ``total`` (as Keras's
    ``CosineDecay(warmup_steps=...)`` in the TensorFlow backend)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class TorchBackend:
    framework = "torch"

    def __init__(self, cfg, rank: int, world: int, manifest, steps_per_epoch: int):
        import ray.train.torch
        import torch

        from ray_ingest.train.models_torch import build_model

        self.cfg, self.rank, self.world = cfg, rank, world
        self.torch = torch
        self.device = device = ray.train.torch.get_device()
        self.cuda = device.type == "cuda"
        if not self.cuda:
            torch.set_num_threads(max(1, int(round(cfg.cpus_per_worker or 1))))
        precision = cfg.resolved_precision(self.cuda)
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.memory_format = torch.channels_last if self.cuda else torch.contiguous_format
        self.aug = cfg.augment_config(manifest)
        self.num_classes = len(manifest.class_names)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, self.num_classes).to(
            device, memory_format=self.memory_format)
        self.model = ray.train.torch.prepare_model(model)
        self.bare = self.model.module if hasattr(self.model, "module") else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        warmup, total = steps_per_epoch, steps_per_epoch * cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup, total))
        self.gpu_decode = None
        if cfg.decode == "gpu":
            from ray_ingest.read.gpu import torch_gpu_decoder

            self.gpu_decode = torch_gpu_decoder(device)

    def _autocast(self):
        return self.torch.autocast(self.device.type,
                                   dtype=self.autocast_dtype or self.torch.float32,
                                   enabled=self.autocast_dtype is not None)

    def to_batch(self, batch):
        """A batch as ``(uint8 images [N, H, W, 3], int64 labels)`` on the device: numpy pixels
        moved there, or encoded records decoded there (``--decode gpu``)."""
        torch = self.torch
        if self.gpu_decode is not None and is_encoded(batch):
            labels = torch.from_numpy(labels_of(batch)).to(self.device, non_blocking=True)
            return self.gpu_decode(batch), labels
        with warnings.catch_warnings():
            # Blocks from Ray's object store are read-only; the step only reads them (every
            # augmentation op makes a new tensor), so torch's warning about it is noise.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            images = torch.from_numpy(batch[keys.IMAGE_COLUMN])
        labels = torch.from_numpy(np.asarray(batch[keys.LABEL_COLUMN], np.int64))
        if self.cuda:
            images = images.pin_memory().to(self.device, non_blocking=True)
            labels = labels.pin_memory().to(self.device, non_blocking=True)
        return images, labels

    def begin_epoch(self, epoch: int) -> None:
        self.model.train()

    def train_step(self, images, labels, epoch: int, step: int) -> Tuple[float, float]:
        import torch.nn.functional as F

        from ray_ingest.augment import torch_ops

        u = step_uniforms(self.cfg, self.rank, epoch, step, int(labels.shape[0]))
        x = torch_ops.augment_uniforms(images, self.aug, u).contiguous(
            memory_format=self.memory_format)
        with self._autocast():
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        correct = (logits.argmax(1) == labels).sum()
        return float(loss.detach()), float(correct)  # float() waits for the step to finish

    def begin_eval(self) -> None:
        self.model.eval()
        if self.world > 1:
            import torch.distributed as dist

            # Every rank validates rank 0's batch-norm statistics (each rank's last forward
            # updated its own).
            for buf in self.bare.buffers():
                dist.broadcast(buf, 0)

    def eval_step(self, images, labels) -> Tuple[float, float]:
        import torch.nn.functional as F

        from ray_ingest.augment import torch_ops

        with self.torch.no_grad():
            x = torch_ops.evaluate(images, self.aug).contiguous(memory_format=self.memory_format)
            with self._autocast():
                logits = self.bare(x)
            loss = F.cross_entropy(logits.float(), labels, reduction="sum")
            return float(loss), float((logits.argmax(1) == labels).sum())

    def all_reduce(self, values: List[float]) -> np.ndarray:
        sums = self.torch.tensor(values, dtype=self.torch.float64, device=self.device)
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(sums)
        return sums.cpu().numpy()

    def save_state(self, directory: str) -> None:
        """The model as a ``torch.export`` program ``model.pt2`` (portable: uint8 images in,
        logits out; its weights are the training model's, exactly) and the optimizer's and the
        learning-rate schedule's state as ``optimizer.pt``."""
        from ray_ingest.train.models_torch import export_model

        export_model(self.bare, self.cfg.model, self.num_classes, self.aug,
                     os.path.join(directory, checkpoint.MODEL_FILES[self.framework]))
        save_optimizer(self.optimizer, self.scheduler,
                       os.path.join(directory, checkpoint.OPTIMIZER_FILES[self.framework]))

    def load_state(self, directory: str) -> None:
        from ray_ingest.train.models_torch import load_exported_weights

        load_exported_weights(os.path.join(directory, checkpoint.MODEL_FILES[self.framework]),
                              self.bare)
        load_optimizer(self.optimizer, self.scheduler,
                       os.path.join(directory, checkpoint.OPTIMIZER_FILES[self.framework]))


def save_optimizer(optimizer, scheduler, path: str) -> None:
    """The optimizer's and the learning-rate schedule's ``state_dict`` (``torch.save``)."""
    import torch

    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, path)


def load_optimizer(optimizer, scheduler, path: str) -> None:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
