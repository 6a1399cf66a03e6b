"""`--js-quantize auto`: every js variant is built and validated; the smallest that passed its budget
is kept and the others are rejected (left out of the output, listed with their reasons)."""
from __future__ import annotations

from deploykit.records import ArtifactRecord


def smallest_passing(artifacts: list) -> object | None:
    """The smallest js entry that passed its budgets, if any: manifest entries (dicts) or records."""
    passed = [a for a in artifacts if _key(a)[0] == "js" and _get(a, "passed")]
    return min(passed, key=lambda a: _get(a, "bytes")) if passed else None


def quantization_notes(artifacts: list) -> list[str]:
    """One line per quantized js variant that failed, naming the smallest variant that passed."""
    best = smallest_passing(artifacts)
    fallback = (f"js/{_key(best)[1]} passed ({_get(best, 'bytes'):,} bytes); --js-quantize auto keeps the smallest "
                "variant that passes" if best else "no js variant passed")
    return [f"js/{_key(a)[1]} failed its budget (weight quantization can wreck accuracy); {fallback}"
            for a in artifacts if _key(a)[0] == "js" and _key(a)[1] != "float32" and not _get(a, "passed")]


def auto_select(records: list[ArtifactRecord]) -> dict:
    """Keep the smallest js variant that passed: mark the other js records `rejected` (the pipeline
    removes their folders and leaves them out of the manifest's artifacts) and return the facts the
    manifest records. When none passed nothing is rejected, so the build fails naming every failure."""
    js = [r for r in records if r.target == "js"]
    best = smallest_passing(js)
    if best is None:
        return {"selected": None, "reason": "no js variant passed its budget", "rejected": []}
    rejected = []
    for r in js:
        if r is best:
            continue
        reason = (f"passed, but {r.bytes:,} bytes is larger than js/{best.variant} ({best.bytes:,} bytes)"
                  if r.passed else "failed its budget")
        r.rejected = reason
        rejected.append({"variant": r.variant, "bytes": r.bytes, "passed": r.passed, "reason": reason,
                         "failures": list(r.failures)})
    return {"selected": best.variant, "bytes": best.bytes,
            "reason": f"the smallest of {len(js)} js variant(s) that passed its budget", "rejected": rejected}


def _get(entry, name: str):
    return entry[name] if isinstance(entry, dict) else getattr(entry, name)


def _key(entry) -> tuple[str, str]:
    if isinstance(entry, ArtifactRecord):
        return entry.target, entry.variant
    return entry["target"], entry["variant"]
