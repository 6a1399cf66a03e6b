"""Model versions: the versions already in a TF Serving model base path, the version policy, and
adding the new version beside them.

`--model-base-path DIR` names an existing base path (what `tensorflow_model_server` reads as
`base_path`: DIR/1/, DIR/2/, ... each a SavedModel). The build reads it in the `deploykit` process
only (the sandboxed workers never see it) and treats it as untrusted data:

- a version is an entry whose name TF Serving parses as one (absl::SimpleAtoi: digits, with
  optional sign, spaces and leading zeros). Only canonical positive names (`1`, `42`) are accepted;
  `01`, `+2`, `0` or `-1` would be versions to the server under another number, so they are refused
  (exit 2) instead of guessed at. A version that is a symbolic link is refused (exit 5), one that is
  not a folder is exit 2. Every other entry (`README`, `.tmp`, a `latest -> 3` link) is ignored and
  never touched;
- the versions the policy serves after the rollout are copied into the build (`serving/models/NAME/`),
  so the image serves exactly them; only regular files and folders are copied (a link inside is
  exit 5). Versions the policy does not serve are neither read nor copied;
- the new version lands in DIR only when the whole build passed (`ServingTarget.before_commit`):
  copied from the validated build under a non-integer name, fsynced, then renamed into place without
  replacing anything (renameat2 RENAME_NOREPLACE), so a polling server sees all of it or nothing and a
  version that appeared meanwhile is never overwritten. Existing versions are never written.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import BadInputError, SecurityError

MAX_VERSION = 2**63 - 1  # TF Serving versions are int64
_ATOI = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+[ \t\n\v\f\r]*")  # what absl::SimpleAtoi accepts
_CANONICAL = re.compile(r"[1-9][0-9]*")
POLICY_FLAG = "--version-policy"


# ---- version policy ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's ServableVersionPolicy: `latest` N (the N highest versions), `all`, or `specific`."""

    kind: str  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def text(self) -> str:
        """As the setting is written: "latest 2", "all", "specific 1,3"."""
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        if self.kind == "specific":
            return "specific " + ",".join(map(str, self.versions))
        return "all"

    def proto(self) -> str:
        """The model_version_policy message in text format."""
        if self.kind == "latest":
            return f"latest {{ num_versions: {self.num_versions} }}"
        if self.kind == "specific":
            return "specific { " + " ".join(f"versions: {v}" for v in self.versions) + " }"
        return "all {}"

    def serves(self, versions) -> list[int]:
        """The versions the server loads among `versions` (file_system_storage_path_source.cc)."""
        present = sorted(set(versions))
        if self.kind == "latest":
            return present[-self.num_versions:] if present else []
        if self.kind == "specific":
            return [v for v in present if v in self.versions]
        return present


def parse_policy(text) -> VersionPolicy:
    """`latest N`, `all` or `specific V[,V...]` (exit 2 naming the setting otherwise)."""
    usage = (f"{POLICY_FLAG} {text!r}: expected 'latest N' (the N highest versions), 'all', or "
             "'specific V[,V...]' (those versions)")
    if not isinstance(text, str):
        raise BadInputError(usage)
    words = text.replace(",", " ").split()
    if words == ["all"]:
        return VersionPolicy("all")
    if len(words) >= 2 and words[0] in ("latest", "specific") and all(_CANONICAL.fullmatch(w) for w in words[1:]):
        numbers = [int(w) for w in words[1:]]
        if any(n > MAX_VERSION for n in numbers):
            raise BadInputError(f"{usage}; versions are at most {MAX_VERSION}")
        if words[0] == "latest" and len(numbers) == 1:
            return VersionPolicy("latest", num_versions=numbers[0])
        if words[0] == "specific":
            return VersionPolicy("specific", versions=tuple(sorted(set(numbers))))
    raise BadInputError(usage)


# ---- the versions in a base path ----------------------------------------------------------------------
def existing_versions(base: Path) -> list[int]:
    """The versions in base path `base`, checked as the module docstring says."""
    flag = "--model-base-path"
    try:
        mode = os.stat(base).st_mode
    except FileNotFoundError:
        raise BadInputError(f"{flag} {base}: no such folder (for a first version, create it empty)") from None
    except OSError as exc:
        raise BadInputError(f"{flag} {base}: cannot read it ({exc.strerror})") from None
    if not stat.S_ISDIR(mode):
        raise BadInputError(f"{flag} {base}: not a folder (a TF Serving model base path holds version folders)")
    try:
        names = os.listdir(base)
    except OSError as exc:
        raise BadInputError(f"{flag} {base}: cannot list it ({exc.strerror})") from None
    versions = []
    for name in sorted(names):
        if not _ATOI.fullmatch(name):
            continue  # not a version to TF Serving: ignored, left alone
        path = base / name
        if not -MAX_VERSION - 1 <= _atoi(name) <= MAX_VERSION:
            continue  # beyond int64: SimpleAtoi fails, so not a version to TF Serving either
        if not _CANONICAL.fullmatch(name):
            raise BadInputError(f"{flag}: {path!s}: TF Serving reads {name!r} as version {_atoi(name)}; rename it "
                                "to its plain number (or move it out) so versions are unambiguous")
        kind = os.lstat(path).st_mode
        if stat.S_ISLNK(kind):
            raise SecurityError(f"{flag}: {path}: refused: version {name} is a symbolic link; a version must be a "
                                "folder inside the base path", details={"path": str(path)})
        if not stat.S_ISDIR(kind):
            raise BadInputError(f"{flag}: {path}: version {name} is not a folder (TF Serving would fail to load it)")
        versions.append(int(name))
    return sorted(versions)


def _atoi(name: str) -> int:
    return int(name.strip())


def check_tree(folder: Path, what: str) -> None:
    """Only regular files and folders under `folder`: a link would copy a file from outside it into
    the image, a FIFO or device would hang the copy (exit 5 / exit 2)."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            mode = os.lstat(p).st_mode
            rel = p.relative_to(folder).as_posix()[:200]
            if stat.S_ISLNK(mode):
                raise SecurityError(f"{what}: refused: '{rel}' in {folder} is a symbolic link; a version's files "
                                    "must be inside it", details={"path": str(p)})
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise BadInputError(f"{what}: '{rel}' in {folder} is not a regular file")


# ---- the rollout: which version, beside which, served how ---------------------------------------------
@dataclass(frozen=True)
class Rollout:
    version: int  # the version this build adds
    policy: VersionPolicy
    kept: tuple[int, ...] = ()  # the versions already in the base path (kept, untouched)
    base: Path | None = None  # --model-base-path, absolute; None: a fresh repository

    @property
    def served(self) -> list[int]:
        return self.policy.serves([*self.kept, self.version])

    def facts(self) -> dict:
        return {"model_version": self.version, "version_policy": self.policy.text(),
                "versions_kept": list(self.kept), "versions_served": self.served,
                "model_base_path": str(self.base) if self.base else None}


def plan(base: str | None, version: int | None, policy: str | None) -> Rollout:
    """The rollout these settings ask for, against the base path as it is now (exit 2 / 5 naming
    what is wrong; nothing is written)."""
    root = Path(os.path.abspath(base)) if base else None
    kept = existing_versions(root) if root is not None else []
    if version is None:
        version = max(kept, default=0) + 1
    if version in kept:
        raise BadInputError(f"--model-version {version}: {root / str(version)} exists; versions are immutable, "
                            f"nothing was written (the next free version is {max(kept) + 1})")
    chosen = parse_policy(policy) if policy is not None else VersionPolicy("latest", num_versions=2 if kept else 1)
    rollout = Rollout(version, chosen, tuple(kept), root)
    every = sorted([*kept, version])
    if chosen.kind == "specific":
        missing = [v for v in chosen.versions if v not in every]
        if missing:
            where = f"in {root}" if root else "in a fresh repository"
            raise BadInputError(f"{POLICY_FLAG} {chosen.text()}: version(s) {', '.join(map(str, missing))} would not "
                                f"exist (versions {where} after this build: {', '.join(map(str, every))})")
    if version not in rollout.served:
        raise BadInputError(f"{POLICY_FLAG} {chosen.text()}: it would serve version(s) "
                            f"{', '.join(map(str, rollout.served))}, not the new version {version} "
                            f"(versions after this build: {', '.join(map(str, every))}); choose a higher "
                            "--model-version or a policy that serves it")
    return rollout


# ---- writing versions -------------------------------------------------------------------------------------
def copy_version(src: Path, model_dir: Path, version: int, what: str, expect_sha256: str | None = None) -> Path:
    """Copy version folder `src` (checked: regular files and folders only) to model_dir/VERSION, staged
    under a non-integer name and renamed into place without replacing anything; with `expect_sha256`,
    only if the staged copy has that tree digest (what lands is what was validated)."""
    check_tree(src, what)
    final = model_dir / str(version)
    staging = model_dir / f".deploykit-adding-{version}-{os.getpid()}"  # not an integer: servers ignore it
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(src, staging, symlinks=True)
        check_tree(staging, what)  # nothing became a link while it was copied
        if expect_sha256 is not None:
            from deploykit.digests import tree_sha256

            if tree_sha256(staging) != expect_sha256:
                raise BadInputError(f"{what}: the copy of {src} differs from the validated version; nothing was added")
        _fsync_tree(staging)
        rename_noreplace(staging, final)
        _fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def rename_noreplace(src: Path, dst: Path) -> None:
    """rename(2) that fails with FileExistsError when `dst` exists (renameat2 RENAME_NOREPLACE; where
    the kernel or file system lacks it: a check, then rename, which refuses a non-empty folder)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, noreplace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), noreplace) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, f"{dst} exists", str(dst))
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, f"{dst} exists", str(dst))
    os.rename(src, dst)


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
