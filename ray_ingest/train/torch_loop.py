"""The per-worker PyTorch loop (runs inside Ray Train's ``TorchTrainer``).

Each worker streams its shard with ``iter_torch_batches`` straight to its device (pinned memory
and non-blocking copies on GPU), augments there with batched torch ops, and trains a
``DistributedDataParallel`` model (``prepare_model``), channels-last with bf16 autocast on GPU.
Validation, reporting, checkpoints and resume work as in the TensorFlow loop.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict

import numpy as np

from ray_ingest.train import common


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 0 at ``total`` (as Keras's
    ``CosineDecay(warmup_steps=...)`` in the TensorFlow loop)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_loop_per_worker(config: Dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from ray_ingest.augment import torch_ops
    from ray_ingest.manifest import read_manifest
    from ray_ingest.train.models_torch import build_model

    cfg, rank, world, restarts, watchdog = common.start_worker(config)
    device = ray.train.torch.get_device()
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(max(1, int(round(cfg.cpus_per_worker or 1))))
    precision = cfg.resolved_precision(cuda)
    autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    memory_format = torch.channels_last if cuda else torch.contiguous_format

    m = read_manifest(cfg.data)
    size = cfg.image_size or m.height
    aug = cfg.augment_config(size)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, len(m.class_names)).to(device, memory_format=memory_format)
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = common.steps_per_epoch(cfg, m.num_records("train"))
    warmup, total = steps_per_epoch, steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, total))

    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        arrays, meta = common.load_checkpoint(checkpoint)
        target = model.module if hasattr(model, "module") else model
        target.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in arrays.items()
                                if k.startswith("m.")})
        optimizer.load_state_dict(meta["optimizer"] | {"state": {
            int(k): {n: torch.from_numpy(arrays[f"o.{k}.{n}"]) for n in names}
            for k, names in meta["optimizer_state_names"].items()}})
        scheduler.load_state_dict(meta["scheduler"])
        start_epoch = meta["epoch"]
        if rank == 0:
            print(f"resumed from the checkpoint of epoch {start_epoch}", flush=True)

    generator = torch.Generator(device=device)
    per_batch = cfg.per_worker_batch

    def train_step(images, labels):
        x = torch_ops.augment(images, aug, generator).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = bare(x)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        correct = (logits.argmax(1) == labels).sum()
        return loss.detach(), correct

    # Validation runs the bare module, never the DDP wrapper: DDP's forward broadcasts buffers
    # (a collective) on every call, and the ranks' parts of the validation split can hold
    # different numbers of batches, so a rank with more batches would wait forever in that
    # broadcast while the others wait in the all-reduce of the sums.
    bare = model.module if hasattr(model, "module") else model

    @torch.no_grad()
    def eval_step(images, labels):
        x = torch_ops.evaluate(images, aug).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = bare(x)
        return (F.cross_entropy(logits.float(), labels, reduction="sum"),
                (logits.argmax(1) == labels).sum())

    def synthetic_batches():
        rng = np.random.default_rng(cfg.seed + rank)
        images = torch.from_numpy(
            rng.integers(0, 256, (per_batch, m.height, m.width, 3), np.uint8)).to(device)
        labels = torch.from_numpy(rng.integers(0, len(m.class_names), per_batch)).to(device)
        while True:
            yield {"image": images, "label": labels}

    tb = common.TensorBoard(cfg.storage_path, cfg.name, enabled=rank == 0)
    shard = None if cfg.synthetic_data else ray.train.get_dataset_shard("train")

    def make_stream(epoch):
        if cfg.synthetic_data:
            return synthetic_batches()
        return common.EpochStream(lambda: shard.iter_torch_batches(
            batch_size=per_batch, drop_last=True, prefetch_batches=cfg.prefetch_batches,
            device=device, pin_memory=cuda,
            local_shuffle_buffer_size=cfg.shuffle_buffer or None,
            local_shuffle_seed=cfg.seed + epoch if cfg.shuffle_buffer else None))

    next_stream = make_stream(start_epoch) if start_epoch < cfg.epochs else None
    for epoch in range(start_epoch, cfg.epochs):
        generator.manual_seed(cfg.seed * 1_000_003 + epoch * world + rank)
        model.train()
        meter = common.EpochMeter()
        batches, next_stream = next_stream, None
        for step in range(steps_per_epoch):
            t0 = time.perf_counter()
            batch = common.next_training_batch(batches, rank, step, steps_per_epoch, epoch)
            t1 = time.perf_counter()
            loss, correct = train_step(batch["image"], batch["label"].long())
            loss_value = float(loss)  # waits for the step to finish
            meter.add(per_batch, t1 - t0, time.perf_counter() - t0, loss_value, float(correct))
            watchdog.tick("training step")
        train_seconds = meter.seconds
        common.finish_stream(batches, drain=not cfg.steps_per_epoch and not cfg.synthetic_data)
        if epoch + 1 < cfg.epochs:
            next_stream = make_stream(epoch + 1)  # starts while this epoch validates

        model.eval()
        if world > 1:
            # One collective, the same on every rank: all ranks validate rank 0's batch-norm
            # statistics (each rank's last forward updated its own).
            for buf in bare.buffers():
                dist.broadcast(buf, 0)
        val_loss = val_correct = val_count = 0.0
        for b in common.val_dataset(cfg, rank, world).iter_torch_batches(
                batch_size=per_batch, prefetch_batches=cfg.prefetch_batches, device=device):
            labels = b["label"].long()
            lsum, csum = eval_step(b["image"], labels)
            val_loss += float(lsum)
            val_correct += float(csum)
            val_count += int(labels.shape[0])
            watchdog.tick("validation batch")
        sums = torch.tensor(common.local_sums(meter, (val_loss, val_correct, val_count), restarts),
                            dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(sums)
        metrics = common.epoch_metrics(epoch, sums.cpu().numpy(), train_seconds)
        arrays = meta = None
        if rank == 0:
            print(common.epoch_line(metrics, cfg.epochs), flush=True)
            tb.write(metrics)
            target = model.module if hasattr(model, "module") else model
            arrays = {f"m.{k}": v.detach().cpu().numpy() for k, v in target.state_dict().items()}
            opt = optimizer.state_dict()
            names = {}
            for k, state in opt["state"].items():
                names[str(k)] = []
                for n, v in state.items():
                    arrays[f"o.{k}.{n}"] = torch.as_tensor(v).cpu().numpy()
                    names[str(k)].append(n)
            meta = {"epoch": epoch + 1, "framework": "torch", "model": cfg.model,
                    "optimizer": {"param_groups": opt["param_groups"]},
                    "optimizer_state_names": names, "scheduler": scheduler.state_dict()}
        common.report_epoch(metrics, arrays, meta)
        watchdog.tick("epoch report")
    tb.close()
    watchdog.stop()
