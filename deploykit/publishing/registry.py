"""Publish to an OCI registry: each artifact an OCI artifact tagged `TAG-TARGET-VARIANT` (oras),
annotated with the manifest's key facts; `TAG` itself holds manifest.json, SHA256SUMS and the
report, pushed last. Everything is pulled back and verified. A target whose artifact is more than
files (the serving image) pushes it in its `publish_artifact` hook, through `Destination`."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploykit.digests import file_sha256, tree_sha256
from deploykit.errors import BadInputError, MissingRuntimeError, PublishConflictError
from deploykit.publishing.content import SUMS, check_sums, content_id, sums_text
from deploykit.publishing.content import names as _names
from deploykit.records import ManifestEntry, entries
from deploykit.targets import loadable, target_class

ENV_USER, ENV_PASSWORD = "DEPLOYKIT_REGISTRY_USERNAME", "DEPLOYKIT_REGISTRY_PASSWORD"
ANNOTATION = "io.deploykit"
_REF = re.compile(r"^(?P<scheme>oci|oci\+http)://(?P<host>[^/]+)/(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


@dataclass(frozen=True)
class OciRef:
    scheme: str
    host: str
    repo: str
    tag: str

    @property
    def insecure(self) -> bool:
        return self.scheme == "oci+http"

    def at(self, tag: str) -> str:
        return f"{self.host}/{self.repo}:{tag}"


class Destination:
    """What a target's publish hooks may use: the registry, tags under this version, credentials."""

    def __init__(self, ref: OciRef, client) -> None:
        self.ref, self.host, self.repo, self._client = ref, ref.host, ref.repo, client

    def tag_for(self, suffix: str) -> str:
        return _tag_for(self.ref, suffix)

    def reference(self, tag: str) -> str:
        return self.ref.at(tag)

    def remote_manifest(self, reference: str) -> dict | None:
        return _remote_manifest(self._client, reference)

    @staticmethod
    def auth() -> dict | None:
        user = os.environ.get(ENV_USER)
        return {"username": user, "password": os.environ.get(ENV_PASSWORD, "")} if user else None


def parse_dest(dest: str) -> OciRef | Path:
    if "://" not in dest:
        return Path(dest)
    m = _REF.match(dest)
    if not m:
        raise BadInputError(f"--to {dest}: expected a folder, oci://HOST[:PORT]/REPO:TAG or oci+http://HOST[:PORT]/REPO:TAG "
                            "(lowercase repository, tag of letters, digits, '_', '.', '-')")
    return OciRef(**m.groupdict())


def _client(ref: OciRef):
    """An oras client for the registry, after a quick probe of `/v2/` (oras itself retries an
    unreachable registry for minutes): the challenge picks basic or token auth."""
    import logging

    import oras.client
    import requests

    logging.getLogger("oras.logger").setLevel(logging.CRITICAL)  # its errors reach us as exceptions
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD) or ""
    url = f"{'http' if ref.insecure else 'https'}://{ref.host}/v2/"
    try:
        probe = requests.get(url, timeout=10)
        challenge = probe.headers.get("WWW-Authenticate", "")
        if probe.status_code == 401 and challenge.lower().startswith("basic") and user:
            probe = requests.get(url, timeout=10, auth=(user, password))
    except requests.RequestException as exc:
        raise MissingRuntimeError(f"{ref.host}: registry not reachable at {url} ({exc.__class__.__name__})") from None
    if probe.status_code == 401:
        if not user:
            raise BadInputError(f"{ref.host}: the registry requires credentials: set {ENV_USER} and {ENV_PASSWORD}")
        if challenge.lower().startswith("basic"):
            raise BadInputError(f"{ref.host}: the registry refused the credentials in {ENV_USER}/{ENV_PASSWORD}")
    elif probe.status_code != 200:
        raise MissingRuntimeError(f"{url}: not an OCI registry (HTTP {probe.status_code})")
    basic = challenge.lower().startswith("basic")
    client = oras.client.OrasClient(hostname=ref.host, insecure=ref.insecure, auth_backend="basic" if basic else "token")
    if user:
        client.auth.set_basic_auth(user, password)
    return client


def _tag_for(ref: OciRef, suffix: str) -> str:
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{ref.tag}-{suffix}")
    return tag[:128]


def annotations(doc: dict, a: ManifestEntry | None, ref: OciRef) -> dict[str, str]:
    facts = {
        "org.opencontainers.image.version": ref.tag,
        "org.opencontainers.image.created": doc["created_at"],
        "org.opencontainers.image.vendor": "deploykit",
        f"{ANNOTATION}.version": doc["deploykit_version"],
        f"{ANNOTATION}.config.hash": doc["config"]["hash"],
        f"{ANNOTATION}.source.kind": doc["source"]["kind"],
        f"{ANNOTATION}.source.sha256": doc["source"].get("sha256") or "",
        f"{ANNOTATION}.content": content_id(doc),
    }
    if a is None:
        facts["org.opencontainers.image.title"] = "deploykit build manifest"
        facts[f"{ANNOTATION}.artifacts"] = ",".join(_names(doc))
        return facts
    lat = a.latency or {}
    facts.update({
        "org.opencontainers.image.title": a.key,
        f"{ANNOTATION}.target": a.target,
        f"{ANNOTATION}.variant": a.variant,
        f"{ANNOTATION}.path": a.path,
        f"{ANNOTATION}.sha256": a.sha256,
        f"{ANNOTATION}.bytes": str(a.bytes),
        f"{ANNOTATION}.size_ratio_to_float32": _s(a.size_ratio_to_float32),
        f"{ANNOTATION}.parity.passed": "true" if a.parity.passed else "false",
        f"{ANNOTATION}.parity.runtime": f"{a.parity.runtime} {a.parity.runtime_version}",
        f"{ANNOTATION}.parity.outputs": ";".join(
            f"{name}:max_abs_rel={_s(m.get('max_abs_rel'))},cosine={_s(m.get('cosine'))}"
            for name, m in a.parity.outputs.items()),
        f"{ANNOTATION}.latency.p50_ms": _s(lat.get("p50_ms")),
        f"{ANNOTATION}.latency.p99_ms": _s(lat.get("p99_ms")),
    })
    return facts


def _s(v) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def _remote_annotations(client, reference: str) -> dict | None:
    """The annotations of an existing tag, or None when the tag does not exist."""
    manifest = _remote_manifest(client, reference)
    return None if manifest is None else manifest.get("annotations") or {}


def _remote_manifest(client, reference: str) -> dict | None:
    """The OCI / Docker manifest of an existing tag, or None when the tag does not exist."""
    import oras.defaults

    container = client.get_container(reference)
    headers = {"Accept": ", ".join(oras.defaults.default_manifest_accepted_media_types)}
    response = client.do_request(f"{client.prefix}://{container.manifest_url()}", "GET", headers=headers)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise MissingRuntimeError(f"{reference}: registry answered HTTP {response.status_code} ({response.reason})")
    return response.json()


def _registry_error(reference: str, exc: Exception) -> MissingRuntimeError:
    hint = f" (set {ENV_USER}/{ENV_PASSWORD})" if "401" in str(exc) or "unauthorized" in str(exc).lower() else ""
    return MissingRuntimeError(f"{reference}: registry error: {str(exc).splitlines()[0][:300]}{hint}")


def to_registry(root: Path, doc: dict, ref: OciRef, *, force: bool) -> dict:
    import requests

    client = _client(ref)
    cid = content_id(doc)
    index_ref = ref.at(ref.tag)
    existing = _remote_annotations(client, index_ref)
    conflicts = [index_ref] if existing is not None and existing.get(f"{ANNOTATION}.content") != cid else []
    destination = Destination(ref, client)
    for a in entries(doc) if not force else []:  # also tags left by an interrupted publish of other content
        own = target_class(a.target).remote_conflicts(a, destination)  # a target that ships more than files
        if own is not None:
            conflicts += own
            continue
        reference = ref.at(_tag_for(ref, f"{a.target}-{a.variant}"))
        previous = _remote_annotations(client, reference)
        if previous is not None and previous.get(f"{ANNOTATION}.sha256") != a.sha256:
            conflicts.append(reference)
    if conflicts and not force:
        raise PublishConflictError(f"{conflicts[0]}: this version is already published with different content; "
                                   f"refusing to overwrite it (use --force)", details={"conflicts": conflicts})
    pushed, notes = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="deploykit-publish-") as tmp:
            for a in entries(doc):
                cls = target_class(a.target)
                own = cls.publish_artifact(a, destination, notes)  # a target that ships more than files
                if own is not None:
                    pushed.append(own)
                    continue
                reference = ref.at(_tag_for(ref, f"{a.target}-{a.variant}"))
                path = root / a.path
                media = "" if path.is_dir() else f":{cls.artifact_media_type}"
                client.push(target=reference, files=[f"{path}{media}"], disable_path_validation=True,
                            manifest_annotations=annotations(doc, a, ref), quiet=True)
                pulled = Path(tmp) / _tag_for(ref, f"{a.target}-{a.variant}")
                client.pull(target=reference, outdir=str(pulled))
                got = pulled / path.name
                digest = tree_sha256(got) if got.is_dir() else file_sha256(got) if got.is_file() else None
                if digest != a.sha256:  # the service returned other bytes than were pushed
                    raise MissingRuntimeError(f"{reference}: pulled back {digest or 'nothing'}, expected {a.sha256}")
                pushed.append({"artifact": a.key, "reference": reference, "sha256": digest})
            # the version's own tag: manifest, checksums and report, pushed last (it marks completion)
            meta = Path(tmp) / "meta"
            meta.mkdir()
            names = ["manifest.json", *(n for n in ("report.json", "report.md", "report.html") if (root / n).is_file())]
            for n in names:
                shutil.copy2(root / n, meta / n)
            (meta / SUMS).write_text(sums_text(meta, names))
            client.push(target=index_ref, files=[str(meta / n) for n in (*names, SUMS)], disable_path_validation=True,
                        manifest_annotations=annotations(doc, None, ref), quiet=True)
            back = Path(tmp) / "meta-pulled"
            client.pull(target=index_ref, outdir=str(back))
            problems = check_sums(back, (back / SUMS).read_text())
            if problems:
                raise MissingRuntimeError(f"{index_ref}: pulled back copy does not verify: {'; '.join(problems)}")
    except ValueError as exc:
        raise _registry_error(index_ref, exc) from None
    except requests.RequestException as exc:
        raise _registry_error(index_ref, exc) from None
    present = {a.target for a in entries(doc)}
    notes += [cls.publish_note_when_absent for n, cls in loadable().items()
              if n not in present and cls.publish_note_when_absent]
    return {"destination": f"{ref.scheme}://{index_ref}", "status": "published", "content_id": cid,
            "pushed": pushed, "notes": notes}
