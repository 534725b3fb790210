"""Training on Ray Train: TensorFlow/Keras (``TensorflowTrainer``) and PyTorch (``TorchTrainer``).

``driver.train(TrainConfig)`` builds the datasets from the reader, the trainer and its
storage, runs it and returns the final metrics; ``tf_loop`` and ``torch_loop`` hold the
per-worker loops, which share the step timing, reporting, checkpoint and attempt bookkeeping of
``common``.
"""

from ray_ingest.train.config import TrainConfig

__all__ = ["TrainConfig"]
