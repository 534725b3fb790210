"""The TensorFlow/Keras side of the training loop (Ray Train's ``TensorflowTrainer``).

The model trains under ``MultiWorkerMirroredStrategy`` (gradients all-reduced across workers);
augmentation runs on the device inside the compiled step (``tf.function``). Evaluation calls
the model outside ``strategy.run``: no collective, so ranks may validate different numbers of
batches. Mixed bf16 on GPU when the precision asks for it.
"""

from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

from ray_ingest.errors import CheckpointError
from ray_ingest.format import keys
from ray_ingest.read.decode import is_encoded, labels_of
import ray_ingest.train.checkpoint as checkpoint
from ray_ingest.train.plan import step_uniforms


class TFBackend:
    framework = "tf"

    def __init__(self, cfg, rank: int, world: int, manifest, steps_per_epoch: int):
        import tensorflow as tf

        from ray_ingest.augment import tf_ops
        from ray_ingest.train.models_tf import InferenceModel, build_model

        self.cfg, self.rank, self.world = cfg, rank, world
        gpus = tf.config.list_physical_devices("GPU")
        for g in gpus:
            tf.config.experimental.set_memory_growth(g, True)
        if not gpus:
            threads = max(1, int(round(cfg.cpus_per_worker or 1)))
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(2)
        import keras

        keras.mixed_precision.set_global_policy(
            "mixed_bfloat16" if cfg.resolved_precision(bool(gpus)) == "bf16" else "float32")
        size = cfg.train_size(manifest)
        aug = cfg.augment_config(manifest)
        keras.utils.set_random_seed(cfg.seed)  # the initial weights
        self.strategy = strategy = tf.distribute.MultiWorkerMirroredStrategy()
        warmup, total = steps_per_epoch, steps_per_epoch * cfg.epochs
        with strategy.scope():
            self.model = model = build_model(cfg.model, len(manifest.class_names), size)
            schedule = keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps=max(1, total - warmup), warmup_target=cfg.lr,
                warmup_steps=warmup)
            self.optimizer = optimizer = keras.optimizers.AdamW(
                learning_rate=schedule, weight_decay=cfg.weight_decay)
            optimizer.build(model.trainable_variables)
        self.export = InferenceModel(model, cfg.model, len(manifest.class_names), aug)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        self._tf = tf

        @tf.function
        def train_step(images, labels, uniforms):
            def step(images, labels):
                x = tf_ops.augment_uniforms(images, aug, uniforms)
                with tf.GradientTape() as tape:
                    logits = tf.cast(model(x, training=True), tf.float32)
                    per_example = loss_fn(labels, logits)
                    loss = tf.nn.compute_average_loss(per_example,
                                                      global_batch_size=cfg.batch_size)
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                correct = tf.reduce_sum(
                    tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
                return tf.reduce_mean(per_example), correct

            loss, correct = strategy.run(step, args=(images, labels))
            return (strategy.experimental_local_results(loss)[0],
                    strategy.experimental_local_results(correct)[0])

        @tf.function
        def eval_step(images, labels):
            logits = tf.cast(model(tf_ops.evaluate(images, aug), training=False), tf.float32)
            loss = tf.reduce_sum(loss_fn(labels, logits))
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
            return loss, correct

        @tf.function
        def all_reduce(values):
            return strategy.reduce(tf.distribute.ReduceOp.SUM,
                                   strategy.run(lambda: tf.identity(values)), axis=None)

        self._train_step, self._eval_step, self._all_reduce = train_step, eval_step, all_reduce
        self.gpu_decode = None
        if cfg.decode == "gpu":
            from ray_ingest.read.gpu import tf_gpu_decoder

            self.gpu_decode = tf_gpu_decoder()

    def to_batch(self, batch):
        """A batch as ``(uint8 images [N, H, W, 3], int64 labels)`` tensors: numpy pixels, or
        encoded records decoded on the GPU (``--decode gpu``)."""
        tf = self._tf
        if self.gpu_decode is not None and is_encoded(batch):
            return self.gpu_decode(batch), tf.convert_to_tensor(labels_of(batch), tf.int64)
        return (tf.convert_to_tensor(batch[keys.IMAGE_COLUMN]),
                tf.convert_to_tensor(batch[keys.LABEL_COLUMN], tf.int64))

    def begin_epoch(self, epoch: int) -> None:
        pass

    def train_step(self, images, labels, epoch: int, step: int) -> Tuple[float, float]:
        u = step_uniforms(self.cfg, self.rank, epoch, step, int(labels.shape[0]))
        loss, correct = self._train_step(images, labels, self._tf.constant(u))
        return float(loss), float(correct)  # float() waits for the step to finish

    def begin_eval(self) -> None:
        pass

    def eval_step(self, images, labels) -> Tuple[float, float]:
        loss, correct = self._eval_step(images, labels)
        return float(loss), float(correct)

    def all_reduce(self, values: List[float]) -> np.ndarray:
        return self._all_reduce(self._tf.constant(values, self._tf.float64)).numpy()

    def save_state(self, directory: str) -> None:
        """The model as ``model.keras`` (portable: uint8 images in, logits out) and the
        optimizer's state as ``optimizer.npz``."""
        self.export.save(os.path.join(directory, checkpoint.MODEL_FILES[self.framework]))
        save_optimizer(self.optimizer,
                       os.path.join(directory, checkpoint.OPTIMIZER_FILES[self.framework]))

    def load_state(self, directory: str) -> None:
        self.export.load_weights(os.path.join(directory, checkpoint.MODEL_FILES[self.framework]))
        load_optimizer(self.optimizer,
                       os.path.join(directory, checkpoint.OPTIMIZER_FILES[self.framework]))


def save_optimizer(optimizer, path: str) -> None:
    """A Keras optimizer's variables (step count, moments, ...), in order, as ``.npz``."""
    np.savez(path, *[np.asarray(v) for v in optimizer.variables])


def load_optimizer(optimizer, path: str) -> None:
    """The variables of :func:`save_optimizer`'s file into ``optimizer`` (built), exactly."""
    with np.load(path) as z:
        if len(z.files) != len(optimizer.variables):
            raise CheckpointError(f"{path}: {len(z.files)} optimizer variables, this optimizer "
                                  f"has {len(optimizer.variables)}")
        for i, v in enumerate(optimizer.variables):
            v.assign(z[f"arr_{i}"])
