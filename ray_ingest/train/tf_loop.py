"""The per-worker TensorFlow/Keras loop (runs inside Ray Train's ``TensorflowTrainer``).

Each worker reads its shard of the training split as TF tensors with prefetching, augments on
the device inside the compiled step (``tf.function``), and trains under
``MultiWorkerMirroredStrategy`` (gradients all-reduced across workers). Validation: each
worker evaluates a disjoint part of the validation split; the sums are all-reduced, so the
reported figures cover all of it.
"""

from __future__ import annotations

import time
from typing import Any, Dict

import numpy as np

from ray_ingest.train import common


def train_loop_per_worker(config: Dict[str, Any]) -> None:
    import ray.train
    import tensorflow as tf

    from ray_ingest.augment import tf_ops
    from ray_ingest.manifest import read_manifest
    from ray_ingest.train.models_tf import build_model

    cfg, rank, world, restarts, watchdog = common.start_worker(config)

    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        tf.config.experimental.set_memory_growth(g, True)
    if not gpus:
        threads = max(1, int(round(cfg.cpus_per_worker or 1)))
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    precision = cfg.resolved_precision(bool(gpus))
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")

    m = read_manifest(cfg.data)
    size = cfg.image_size or m.height
    aug = cfg.augment_config(size)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    steps_per_epoch = common.steps_per_epoch(cfg, m.num_records("train"))
    warmup, total = steps_per_epoch, steps_per_epoch * cfg.epochs
    with strategy.scope():
        model = build_model(cfg.model, len(m.class_names), size)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(1, total - warmup), warmup_target=cfg.lr, warmup_steps=warmup)
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
        optimizer.build(model.trainable_variables)

    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        arrays, meta = common.load_checkpoint(checkpoint)
        model.set_weights([arrays[f"w{i}"] for i in range(meta["num_weights"])])
        for i, v in enumerate(optimizer.variables):
            v.assign(arrays[f"o{i}"])
        start_epoch = meta["epoch"]
        if rank == 0:
            print(f"resumed from the checkpoint of epoch {start_epoch}", flush=True)

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    per_batch = cfg.per_worker_batch

    @tf.function
    def train_step(images, labels, seed):
        def step(images, labels):
            x = tf_ops.augment(images, aug, seed)
            with tf.GradientTape() as tape:
                logits = tf.cast(model(x, training=True), tf.float32)
                per_example = loss_fn(labels, logits)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=cfg.batch_size)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
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

    def synthetic_batches():
        rng = np.random.default_rng(cfg.seed + rank)
        images = tf.constant(rng.integers(0, 256, (per_batch, m.height, m.width, 3), np.uint8))
        labels = tf.constant(rng.integers(0, len(m.class_names), per_batch), tf.int64)
        while True:
            yield {"image": images, "label": labels}

    tb = common.TensorBoard(cfg.storage_path, cfg.name, enabled=rank == 0)
    shard = None if cfg.synthetic_data else ray.train.get_dataset_shard("train")

    def make_stream(epoch):
        # numpy batches from iter_batches, made TF tensors on this thread below: the same as
        # iter_tf_batches, whose generator loses batches when a background thread starts it
        # and the loop continues it (seen with Ray 2.60), as EpochStream does.
        if cfg.synthetic_data:
            return synthetic_batches()
        return common.EpochStream(lambda: shard.iter_batches(
            batch_size=per_batch, drop_last=True, prefetch_batches=cfg.prefetch_batches,
            batch_format="numpy", local_shuffle_buffer_size=cfg.shuffle_buffer or None,
            local_shuffle_seed=cfg.seed + epoch if cfg.shuffle_buffer else None))

    next_stream = make_stream(start_epoch) if start_epoch < cfg.epochs else None
    for epoch in range(start_epoch, cfg.epochs):
        meter = common.EpochMeter()
        batches, next_stream = next_stream, None
        for step in range(steps_per_epoch):
            t0 = time.perf_counter()
            batch = common.next_training_batch(batches, rank, step, steps_per_epoch, epoch)
            t1 = time.perf_counter()
            seed = tf.constant([cfg.seed, (epoch * 1_000_003 + step) * world + rank], tf.int64)
            images = tf.convert_to_tensor(batch["image"])
            labels = tf.convert_to_tensor(batch["label"], tf.int64)
            loss, correct = train_step(images, labels, seed)
            loss = float(loss)  # waits for the step to finish
            meter.add(per_batch, t1 - t0, time.perf_counter() - t0, loss, float(correct))
            watchdog.tick("training step")
        train_seconds = meter.seconds
        common.finish_stream(batches, drain=not cfg.steps_per_epoch and not cfg.synthetic_data)
        if epoch + 1 < cfg.epochs:
            next_stream = make_stream(epoch + 1)  # starts while this epoch validates

        val_loss = val_correct = val_count = 0.0
        for b in common.val_dataset(cfg, rank, world).iter_tf_batches(
                batch_size=per_batch, prefetch_batches=cfg.prefetch_batches):
            labels = tf.cast(b["label"], tf.int64)
            lsum, csum = eval_step(b["image"], labels)
            val_loss += float(lsum)
            val_correct += float(csum)
            val_count += int(labels.shape[0])
            watchdog.tick("validation batch")
        sums = all_reduce(tf.constant(
            common.local_sums(meter, (val_loss, val_correct, val_count), restarts),
            tf.float64)).numpy()
        metrics = common.epoch_metrics(epoch, sums, train_seconds)
        arrays = meta = None
        if rank == 0:
            print(common.epoch_line(metrics, cfg.epochs), flush=True)
            tb.write(metrics)
            weights = model.get_weights()
            arrays = {f"w{i}": w for i, w in enumerate(weights)}
            arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
            meta = {"epoch": epoch + 1, "num_weights": len(weights),
                    "framework": "tf", "model": cfg.model}
        common.report_epoch(metrics, arrays, meta)
        watchdog.tick("epoch report")
    tb.close()
    watchdog.stop()
