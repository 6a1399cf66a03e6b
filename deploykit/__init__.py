"""deploykit: take a Keras model to deployable artifacts and prove each one in its own runtime.

`deploykit.build(...)` is the Python entry point; the `deploykit` CLI is a thin layer over it.
Importing this package does not import TensorFlow.
"""
from deploykit.version import __version__


def build(*args, **kwargs):
    """See `deploykit.pipeline.build`."""
    from deploykit.pipeline import build as _build

    return _build(*args, **kwargs)


def validate(out, **kwargs):
    """See `deploykit.validation.judge.revalidate`."""
    from deploykit.validation.judge import revalidate

    return revalidate(out, **kwargs)


__all__ = ["build", "validate", "__version__"]
