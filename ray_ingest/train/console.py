"""What the driver prints about a training run: one table row per epoch as epochs finish, and a
summary at the end (best epoch, where the models and logs are, how to resume and evaluate).

The workers print nothing per epoch: rank 0 writes each epoch's metrics to the run's history
file (:class:`rundir.History`), and :class:`EpochTable` follows that file from a thread of the
driver while ``trainer.fit()`` runs, so the rows come from the driver wherever the workers run.
"""

from __future__ import annotations

import shlex
import threading
from typing import Any, Callable, Dict, List, Optional

from ray_ingest.progress import plural
import ray_ingest.train.metrics as metrics
import ray_ingest.train.rundir as rundir


class EpochTable:
    """Prints a row for each epoch that appears in the history file at ``path`` (epochs already
    there when it starts — those of a run being resumed — are not printed again; an epoch
    trained again after a restart is). Use as a context manager around the run; the last
    rows are printed on exit."""

    def __init__(self, path: str, epochs: int, progress: Callable[[str], None],
                 interval: float = 1.0):
        self.path, self.epochs, self.progress, self.interval = path, epochs, progress, interval
        self.seen = {_key(r) for r in rundir.read_history(path)}
        self.printed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, daemon=True,
                                        name="ray-ingest-epoch-table")

    def __enter__(self) -> "EpochTable":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            for row in rundir.read_history(self.path):
                if _key(row) in self.seen:
                    continue
                self.seen.add(_key(row))
                if self.printed == 0:
                    self.progress(metrics.table_header())
                self.printed += 1
                line = metrics.table_row(row, self.epochs)
                if row.get("restarts"):
                    line += f"   (after {row['restarts']} restart{'s' * (row['restarts'] > 1)})"
                self.progress(line)


def _key(row: Dict[str, Any]):
    return row["epoch"], row.get("time")


def summary(final: Dict[str, Any]) -> List[str]:
    """The lines that end a run (``final``: the driver's report). Without a validation split
    (``val_accuracy`` None) they say so, and that the best checkpoint is the one of the lowest
    training loss; the ``evaluate`` hint then names the train split."""
    best, latest = final.get("best"), final.get("latest")
    validated = final["val_accuracy"] is not None
    last = (f"last epoch val acc {final['val_accuracy']:.3f}" if validated else
            f"last epoch loss {final['loss']:.4f}; no validation split (converted with "
            "--val-fraction 0): the best checkpoint is the one of the lowest training loss")
    lines = [f"done: {plural(final['epochs'], 'epoch')} in {final['wall_seconds']:.0f} s, "
             f"{plural(final['restarts'], 'restart')}; {last}"]
    same = best is not None and latest is not None and best["checkpoint"] == latest["checkpoint"]
    if best is not None:
        score = (f"val acc {best['val_accuracy']:.3f}" if best["val_accuracy"] is not None
                 else f"loss {best['loss']:.4f}")
        lines.append(f"best:    epoch {best['epoch']}, {score}"
                     f"{' (also the latest)' if same else ''}  {best['model_path']}")
    if latest is not None and not same:
        lines.append(f"latest:  epoch {latest['epoch']}  {latest['model_path']}")
    split = "" if validated else " --split train"
    lines += [f"history: {final['history']}",
              f"logs:    tensorboard --logdir {shlex.quote(final['tensorboard'])}",
              f"resume:  {final['resume_command']}  (raise --epochs to train further)",
              f"evaluate: ray-ingest evaluate {shlex.quote(final['data'])} --model "
              f"{shlex.quote(final['run_dir'])}{split}"]
    return lines


def position_words(info: Dict[str, Any]) -> str:
    """Where a checkpoint's run goes on, in words (epochs and steps from 1)."""
    from ray_ingest.train.checkpoint import position_of

    epoch, step = position_of(info)
    return f"epoch {epoch + 1}, step {step + 1}" if step else f"the start of epoch {epoch + 1}"


def model_entry(info: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The report's view of a checkpoint found by ``checkpoint.find_checkpoints``."""
    if info is None:
        return None
    m = info.get("metrics") or {}
    return {"epoch": info["epoch"], "position": info.get("position"), "val_accuracy": m.get("val_accuracy"),
            "loss": m.get("loss"), "checkpoint": info["checkpoint"],
            "model_path": info["model_path"]}
