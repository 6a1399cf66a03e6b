"""`deploykit publish OUT --to DEST`: ship only what was proven, and prove it arrived intact.

DEST is a folder, or an OCI registry reference:
  - `DIR`: the whole build (artifacts, manifest, report, validation data) plus `SHA256SUMS`,
    staged beside DIR and renamed into place; `deploykit validate DIR` works on the copy.
  - `oci://HOST[:PORT]/REPO:TAG` (HTTPS) or `oci+http://HOST[:PORT]/REPO:TAG` (plain HTTP, local
    registries): each artifact becomes an OCI artifact tagged `TAG-TARGET-VARIANT` (pushed with
    the `oras` client, annotations carrying the manifest's key facts; the media type is the
    target's `artifact_media_type`); `TAG` holds manifest.json, SHA256SUMS and the report. A target
    with more than files to ship pushes it in its `publish_artifact` hook (the serving target: its
    image, by digest, as `TAG-serving`).
After upload everything is pulled back and every checksum verified. A version already published
with different content is refused (exit 6) unless `force`. No TensorFlow here.
Credentials: DEPLOYKIT_REGISTRY_USERNAME / DEPLOYKIT_REGISTRY_PASSWORD (basic auth).
"""
from __future__ import annotations

from pathlib import Path

from deploykit import manifest as manifest_mod
from deploykit.errors import BadInputError, BudgetError
from deploykit.publishing.folder import to_folder
from deploykit.publishing.registry import parse_dest, to_registry
from deploykit.records import entries


def publish(out: str | Path, dest: str, *, force: bool = False) -> dict:
    """Publish a build; returns what was published and verified."""
    root = Path(out)
    doc = manifest_mod.read(root)
    problems = manifest_mod.verify_files(root, doc)
    if problems:
        raise BadInputError(f"{root}: files changed since the build, refusing to publish: {problems[0]}"
                            + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""), details={"problems": problems})
    unproven = [a.key for a in entries(doc) if not a.passed]
    if unproven or doc.get("passed") is False:  # e.g. OUT.failed, kept for inspection only
        why = f"validation did not pass for {', '.join(unproven)}" if unproven else "the build failed validation"
        raise BudgetError(f"{root}: refusing to publish: {why} (a failed build is kept for inspection only)",
                          details={"unproven": unproven})
    target = parse_dest(dest)
    if isinstance(target, Path):
        return to_folder(root, doc, target, force=force)
    return to_registry(root, doc, target, force=force)
