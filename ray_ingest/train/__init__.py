"""Training on Ray Train: TensorFlow/Keras (``TensorflowTrainer``) and PyTorch (``TorchTrainer``).

:mod:`driver` builds the training dataset from the reader, the trainer and its storage, runs
it and returns the final metrics (:func:`train`, public as ``ray_ingest.fit``); :mod:`loop` is
the one per-worker loop, with the framework specifics in :mod:`backend_tf` / :mod:`backend_torch`
and the models in :mod:`models_tf` / :mod:`models_torch`; :mod:`stream`, :mod:`metrics`,
:mod:`checkpoint`, :mod:`rundir` and :mod:`watchdog` hold what the loop needs; :mod:`console` is
what the driver prints (the epoch table, the summary); :mod:`evaluate` runs a saved model on a
split.
"""

from ray_ingest.train.config import TrainConfig
from ray_ingest.train.driver import train

__all__ = ["TrainConfig", "train"]
