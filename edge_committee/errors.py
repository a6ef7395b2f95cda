"""The two kinds of error (style.md item 6).

:class:`EdgeCommitteeError` is a *user's* mistake: a bad spec, a missing file, a corrupt bundle.
Its message says what failed, the actual vs expected value and the fix; the CLI prints it as one
line and exits 1. Any other exception is a bug in the SDK and keeps its traceback.
"""


class EdgeCommitteeError(Exception):
    """A user's mistake, reported as one clear line."""


class SpecError(EdgeCommitteeError):
    """The committee spec is invalid."""


class BundleError(EdgeCommitteeError):
    """A bundle is missing, corrupt or of an unknown schema."""


class DependencyError(EdgeCommitteeError):
    """An optional dependency is needed but not installed."""


class OutputError(EdgeCommitteeError):
    """An output path that must not be written: a device node, a link, a folder, someone else's file."""


class InputShapeError(EdgeCommitteeError, ValueError):
    """A batch does not have the shape a member takes (its preprocessing and its file disagree)."""
