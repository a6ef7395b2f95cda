"""The bundle: manifest + member files + cached outputs + report, checksummed and swapped in atomically."""

from edge_committee.bundle.bundle import (
    MANIFEST,
    OUTPUTS,
    SCHEMA_VERSION,
    BundleEdit,
    edit_bundle,
    finalize_manifest,
    load_outputs,
    read_manifest,
    save_outputs,
    verify_files,
    write_json_atomic,
)
from edge_committee.bundle.manifest import DIGEST_KEY, manifest_digest, resolve_in_bundle
from edge_committee.bundle.staging import StagingDir, bundle_lock

__all__ = [
    "DIGEST_KEY",
    "MANIFEST",
    "OUTPUTS",
    "SCHEMA_VERSION",
    "BundleEdit",
    "StagingDir",
    "bundle_lock",
    "edit_bundle",
    "finalize_manifest",
    "load_outputs",
    "manifest_digest",
    "read_manifest",
    "resolve_in_bundle",
    "save_outputs",
    "verify_files",
    "write_json_atomic",
]
