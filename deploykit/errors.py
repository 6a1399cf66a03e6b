"""Every failure deploykit reports on purpose, with its stable exit code.

The CLI maps these to exit codes and to the `--json` error object; the Python API raises them.
Messages are one line and name the file or field at fault.
"""
from __future__ import annotations

from typing import Any


class DeployKitError(Exception):
    """Base class. `code` is the stable machine-readable name used in `--json` output."""

    exit_code = 1
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict:
        body = {"code": self.code, "exit_code": self.exit_code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class BadInputError(DeployKitError):
    """Usage error or bad input: a missing, truncated or mislabelled file, a bad option."""

    exit_code = 2
    code = "bad_input"


class UnsupportedOpsError(BadInputError):
    """The model needs ops the target runtime does not have."""

    code = "unsupported_ops"


class OutputUnwritableError(BadInputError):
    """The output folder cannot be written: read-only file system, full disk, quota."""

    code = "output_unwritable"


class BudgetError(DeployKitError):
    """An artifact was built but is not faithful (parity) or breaks a latency or size budget."""

    exit_code = 3
    code = "budget_failed"

    def __init__(self, message: str, *, manifest: dict | None = None, details: Any = None):
        super().__init__(message, details=details)
        self.manifest = manifest


class MissingRuntimeError(DeployKitError):
    """A runtime or service a step needs is not installed or not running."""

    exit_code = 4
    code = "missing_runtime"


class SecurityError(DeployKitError):
    """Refused by the security policy (e.g. a model that carries code)."""

    exit_code = 5
    code = "refused_by_policy"


class PublishConflictError(DeployKitError):
    """The publish destination already holds this version with different content."""

    exit_code = 6
    code = "publish_conflict"


class LockedError(DeployKitError):
    """Another build holds the output folder's lock."""

    exit_code = 75
    code = "output_locked"


EXIT_CODES = {
    0: "ok",
    1: "internal error (a bug: please report it with the traceback from --debug)",
    2: "usage error or bad input",
    3: "an artifact failed its parity, latency or size budget",
    4: "a required runtime or service is missing",
    5: "refused by the security policy",
    6: "publish: this version is already published with other content (--force)",
    75: "the output folder is locked by another build",
}
