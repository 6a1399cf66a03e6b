"""deploykit: take a Keras model to deployable artifacts and prove each one in its own runtime.

The Python API (`deploykit.api`) mirrors the CLI, command for command and flag for keyword:

    build(model, data, target=..., quantize=..., out=...) -> manifest dict
    validate(out) -> validation report dict
    train(config, out) -> run metrics dict
    report(out, baseline=...) -> Report (report.json/.md/.html)
    publish(out, to) -> what was published

Every failure is a `deploykit.errors.DeployKitError` subclass carrying its CLI exit code.
Importing this package does not import TensorFlow.
"""
from deploykit import errors
from deploykit.api import Report, build, publish, report, train, validate
from deploykit.errors import DeployKitError
from deploykit.version import __version__

__all__ = ["build", "validate", "train", "report", "publish", "Report", "DeployKitError", "errors", "__version__"]
