"""Peak memory of one training step per image and pixel, per model: the figure behind
``ray_ingest.train.memory.STEP_BYTES_PER_PIXEL``.

Each measurement runs in a fresh process: build the torch model, run forward and backward (the
augmentation as in training) on a batch of ``B`` random images of ``S`` x ``S`` a few times, and
read the process's peak RSS (``ru_maxrss``). Two batch sizes give the slope (bytes per image),
divided by ``S * S``: the bytes per training pixel of one image in a step. Prints JSON.

    python benchmarks/train_memory.py --size 64 --batches 16 48
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import resource, sys
import torch
import torch.nn.functional as F
from ray_ingest.augment import AugmentConfig, torch_ops
from ray_ingest.train.models_torch import build_model
name, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
model = build_model(name, 10)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
aug = AugmentConfig(size=size)
g = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
labels = torch.randint(0, 10, (batch,))
for _ in range(3):
    x = torch_ops.augment(images, aug, g)
    loss = F.cross_entropy(model(x), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def peak_rss(model: str, size: int, batch: int) -> int:
    out = subprocess.run([sys.executable, "-c", _CHILD, model, str(size), str(batch)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batches", type=int, nargs=2, default=(16, 48))
    p.add_argument("--models", nargs="+",
                   default=["small_cnn", "resnet18", "resnet50", "mobilenet_v2"])
    args = p.parse_args()
    lo, hi = args.batches
    rows = {}
    for m in args.models:
        a, b = peak_rss(m, args.size, lo), peak_rss(m, args.size, hi)
        per_image = (b - a) / (hi - lo)
        rows[m] = {"peak_rss": {lo: a, hi: b}, "bytes_per_image": per_image,
                   "bytes_per_pixel": per_image / args.size ** 2}
        print(m, json.dumps(rows[m]), flush=True)
    print(json.dumps({"size": args.size, "batches": [lo, hi], "models": rows}, indent=1))


if __name__ == "__main__":
    main()
