"""The bundle: manifest + member files + cached outputs + report, written atomically."""

from edge_committee.bundle.bundle import (
    MANIFEST,
    OUTPUTS,
    SCHEMA_VERSION,
    BundleEdit,
    StagingDir,
    edit_bundle,
    finalize_manifest,
    load_outputs,
    read_manifest,
    save_outputs,
    verify_files,
    write_json_atomic,
)

__all__ = [
    "MANIFEST",
    "OUTPUTS",
    "SCHEMA_VERSION",
    "BundleEdit",
    "StagingDir",
    "edit_bundle",
    "finalize_manifest",
    "load_outputs",
    "read_manifest",
    "save_outputs",
    "verify_files",
    "write_json_atomic",
]
