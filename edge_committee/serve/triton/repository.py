"""Writing an export into a Triton model repository that may hold other models.

A Triton repository commonly holds several models. ``export-triton --out REPO``:

- **new or empty folder**: the whole repository is staged in a hidden sibling and swapped in
  (:class:`~edge_committee.bundle.StagingDir`);
- **an earlier export** (``edge_committee.json`` at its top): only the model folders we wrote are
  replaced, each in one rename; models of an earlier export that this one no longer writes are
  removed if they are ours; every other file and folder (the user's own models, a README) stays.
  A model folder is ours when it holds ``edge_committee.model.json``
  (:mod:`~edge_committee.serve.triton.integrity`) or the earlier export's ``edge_committee.json``
  lists it;
- **any other non-empty folder**: refused, unless ``force``; then our models are added beside the
  existing ones (a folder of the same name as one of ours is replaced).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from edge_committee.bundle import StagingDir
from edge_committee.bundle.staging import OLD_TAG, _unique_sibling, bundle_lock, exchange
from edge_committee.errors import EdgeCommitteeError
from edge_committee.serve.triton.integrity import is_our_model

MARKER = "edge_committee.json"


def exported_models(repo: Path) -> set[str]:
    """Model names the repository's ``edge_committee.json`` says an earlier export wrote."""
    try:
        doc = json.loads((repo / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(doc, dict):
        return set()
    names = {doc.get("cascade_model")}
    for key in ("member_models", "single_models"):
        if isinstance(doc.get(key), dict):
            names |= set(doc[key].values())
    return {n for n in names if isinstance(n, str) and n and "/" not in n and not n.startswith(".")}


def _is_ours(repo: Path, name: str, listed: set[str]) -> bool:
    path = repo / name
    return not path.is_symlink() and path.is_dir() and (is_our_model(path) or name in listed)


class RepoStaging(StagingDir):
    """A staging folder for a model repository (see the module doc)."""

    def _non_empty(self) -> bool:
        return self.dest.is_dir() and any(self.dest.iterdir())

    def _check_dest(self) -> None:
        if os.path.lexists(self.dest) and not self.dest.is_dir():
            raise EdgeCommitteeError(f"{self.dest} is a file; choose another --out for the model repository")
        if self._non_empty() and not (self.dest / MARKER).is_file() and not self.force:
            raise EdgeCommitteeError(f"{self.dest} exists and is not an exported repository (no {MARKER}); choose "
                                     "another --out, or pass --force to add the models to it (its other files stay)")

    def commit(self) -> Path:
        if not self._non_empty():
            return super().commit()
        assert self.path is not None
        try:
            with bundle_lock(self.dest):
                self._check_dest()
                merge_models(self.path, self.dest, self.force)
        finally:
            self._discard()
        return self.dest


def merge_models(stage: Path, repo: Path, force: bool = False) -> None:
    """Move the model folders of ``stage`` into ``repo``, replacing only models we wrote (or ``force``)."""
    listed = exported_models(repo)
    new = sorted(p.name for p in stage.iterdir() if p.is_dir())
    foreign = [m for m in new if os.path.lexists(repo / m) and not _is_ours(repo, m, listed)]
    if foreign and not force:
        raise EdgeCommitteeError(f"{repo / foreign[0]} exists and was not written by export-triton (no "
                                 "edge_committee.model.json); rename that model, choose another --name or --out, "
                                 "or pass --force to replace it")
    for m in new:
        _replace_folder(stage / m, repo / m)
    for m in sorted(listed - set(new)):  # ours from the earlier export, no longer written
        if _is_ours(repo, m, listed):
            shutil.rmtree(repo / m, ignore_errors=True)
    os.replace(stage / MARKER, repo / MARKER)


def _replace_folder(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst`` in one step where Linux allows (the old ``dst`` is removed)."""
    if not os.path.lexists(dst):
        os.rename(src, dst)
        return
    if dst.is_symlink() or not dst.is_dir():  # only with force: a file or link of that name
        dst.unlink()
        os.rename(src, dst)
        return
    if exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)  # src now holds the old model
        return
    aside = _unique_sibling(dst, OLD_TAG)
    os.rename(dst, aside)
    os.rename(src, dst)
    shutil.rmtree(aside, ignore_errors=True)
