"""Builders for tests/test_fit.py: the bad cases a user's config can name (importable via PYTHONPATH)."""


def raising_builder():
    raise RuntimeError("the builder blew up on purpose")


def not_a_model():
    return 42


def mismatched_dataset():
    """(train, valid) whose features are 4-vectors: the digits CNN expects (8, 8, 1) images."""
    import numpy as np

    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    x = np.zeros((64, 4), np.float32)
    y = np.zeros((64,), np.int32)
    ds = tf.data.Dataset.from_tensor_slices(({"pixels": x}, y)).batch(16)
    return ds, ds
