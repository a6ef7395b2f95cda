"""Helpers shared by the bundle tests (tampering with a manifest, checking a CLI error line)."""

from __future__ import annotations

import json
from pathlib import Path


def tamper(root: Path, fn, resign: bool = False) -> dict:
    """Apply ``fn`` to the parsed manifest and write it back; ``resign``: recompute every checksum."""
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    fn(manifest)
    if resign:
        from edge_committee._util import sha256_file

        for rel in list(manifest.get("files", {})) if isinstance(manifest.get("files"), dict) else []:
            p = Path(rel) if Path(rel).is_absolute() else root / rel
            if p.is_file():
                manifest["files"][rel] = sha256_file(p)
        for m in manifest.get("members", []):
            if isinstance(m, dict) and isinstance(manifest.get("files"), dict) and m.get("file") in manifest["files"]:
                m["sha256"] = manifest["files"][m["file"]]
        try:
            from edge_committee.bundle.manifest import manifest_digest
        except ImportError:  # an edge_committee without manifest checksums (to see a test fail before a fix)
            pass
        else:
            manifest["manifest_sha256"] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest, indent=2))
    return manifest


def one_line_error(code: int, err: str) -> str:
    """Assert the CLI failed with exactly one ``error:`` line and no traceback; return it."""
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]
