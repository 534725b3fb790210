"""What a checkpoint inside an epoch costs against the model's save alone, in one run per
framework.

    python benchmarks/checkpoint_bench.py SHARDS --steps 41 --every 4 \\
        --json benchmarks/results/checkpoint.json

Each framework trains ``--steps`` global steps of one epoch with ``--checkpoint-every-steps
--every`` (one worker, the default planned order). The training loop times, on rank 0, each
checkpoint inside the epoch (save, ``meta.json``, Ray Train's report, which copies the folder
to the run's storage) and the model save within it (model, optimizer, learning-rate
schedule); both come back in ``history.jsonl``. Beside them: the step time, and the bytes of a
checkpoint folder that are not the framework's own files (``meta.json``: the position is two
integers, whatever the dataset's size).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--steps", type=int, default=41)
    p.add_argument("--every", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--frameworks", default="torch,tf")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    from ray_ingest.bench.report import write_json_markdown
    from ray_ingest.train import TrainConfig, train
    from ray_ingest.train.checkpoint import META_FILE
    from ray_ingest.train.rundir import history_path, read_history, run_dir

    report = {"data": a.data, "steps": a.steps, "every": a.every, "rows": {}}
    lines = ["| framework | checkpoints | checkpoint, s | model save, s | checkpoint / save | "
             "step, s | meta.json, bytes |", "|---|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="ray-ingest-ckpt-bench-") as runs:
        for framework in a.frameworks.split(","):
            cfg = TrainConfig(data=a.data, framework=framework, model=a.model, epochs=1,
                              batch_size=a.batch_size, image_size=a.image_size,
                              steps_per_epoch=a.steps, checkpoint_every_steps=a.every,
                              storage_path=runs, name=f"bench-{framework}")
            train(cfg, progress=lambda s: None)
            epoch = read_history(history_path(runs, cfg.name))[-1]
            n = epoch["checkpoints"]
            meta_bytes = None
            run = run_dir(runs, cfg.name)
            for name in sorted(os.listdir(run)):
                path = os.path.join(run, name, META_FILE)
                if name.startswith("checkpoint_") and os.path.exists(path):
                    meta_bytes = os.path.getsize(path)
            row = {"checkpoints": n,
                   "checkpoint_seconds": epoch["checkpoint_seconds"] / max(1, n),
                   "model_save_seconds": epoch["model_save_seconds"] / max(1, n),
                   "step_seconds": epoch["epoch_seconds"] / max(1, epoch["steps"]),
                   "meta_bytes": meta_bytes}
            row["ratio"] = row["checkpoint_seconds"] / max(1e-9, row["model_save_seconds"])
            report["rows"][framework] = row
            print(f"{framework}: {n} checkpoints, {row['checkpoint_seconds']:.3f} s each, model "
                  f"save {row['model_save_seconds']:.3f} s ({row['ratio']:.2f}x), step "
                  f"{row['step_seconds']:.3f} s, meta.json {meta_bytes} bytes", flush=True)
            lines.append(f"| {framework} | {n} | {row['checkpoint_seconds']:.3f} | "
                         f"{row['model_save_seconds']:.3f} | **{row['ratio']:.2f}** | "
                         f"{row['step_seconds']:.3f} | {meta_bytes} |")
    if a.json:
        write_json_markdown(a.json, report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
