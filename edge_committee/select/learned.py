"""Learned-combiner candidates for selection: cross-fitted stage statistics of member prefixes.

With a combiner configured, the frontier holds, beside the plain (averaging) ensembles and
cascades, their learned twins: the same member sets and sequences, each stage deciding on the
learned combination of its prefix (:mod:`edge_committee.cascade.learned`). Their validation
figures come from *out-of-fold* probabilities (each sample combined by a fit that never saw it),
so a learned candidate's accuracy is not overstated next to a plain one; their test figures use
the combiner fitted on the whole validation split, the one a bundle deploys.

:class:`LearnedOutputs` has the interface of :class:`.stats.SplitOutputs` that the threshold
search walks (``extend``, ``sequence``, ``num_samples``), so both kinds share one search.
A combination depends on the member *set* (a sum over members), so fits are cached by set and
shared by every sequence over it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from edge_committee.cascade import learned
from edge_committee.cascade import reference as ref
from edge_committee.errors import EdgeCommitteeError
from edge_committee.select.stats import StageStats

COMBINERS = ("average", "learned")


@dataclasses.dataclass(frozen=True)
class CombinerConfig:
    """How learned combiners are fitted (the spec's ``combiner`` mapping).

    Attributes:
        folds: cross-fitting folds on the validation split (default 5, >= 2).
        l2: pull of the weights towards the normalised geometric mean (default 1e-3).
        seed: seed of the fold assignment (default 0).
        max_members: most members in a learned ensemble or cascade (default: selection's).
    """

    folds: int = learned.DEFAULT_FOLDS
    l2: float = learned.DEFAULT_L2
    seed: int = 0
    max_members: int | None = None

    @classmethod
    def from_value(cls, value) -> CombinerConfig | None:
        """``None``/``"average"`` -> None; ``"learned"`` or ``{kind: learned, ...}`` -> a config."""
        if value is None or value == "average":
            return None
        if value == "learned":
            return cls()
        if isinstance(value, CombinerConfig):
            return value
        if isinstance(value, Mapping) and value.get("kind", "learned") == "learned":
            extra = sorted(set(value) - {"kind", "folds", "l2", "seed", "max_members"})
            if extra:
                raise EdgeCommitteeError(f"combiner: unknown key {extra[0]!r}; allowed: kind, folds, l2, seed, "
                                         "max_members")
            cfg = cls(**{k: v for k, v in value.items() if k != "kind"})
            cfg.check()
            return cfg
        raise EdgeCommitteeError(f"combiner: {value!r} is not allowed; use 'average', 'learned' or "
                                 "{kind: learned, folds: 5, l2: 0.001, seed: 0, max_members: 3}")

    def check(self) -> None:
        ok_int = lambda v, lo: isinstance(v, int) and not isinstance(v, bool) and v >= lo
        if not ok_int(self.folds, 2):
            raise EdgeCommitteeError(f"combiner.folds: {self.folds!r} must be an integer >= 2")
        if not (isinstance(self.l2, (int, float)) and not isinstance(self.l2, bool) and self.l2 >= 0):
            raise EdgeCommitteeError(f"combiner.l2: {self.l2!r} must be a number >= 0")
        if not ok_int(self.seed, 0):
            raise EdgeCommitteeError(f"combiner.seed: {self.seed!r} must be an integer >= 0")
        if self.max_members is not None and not ok_int(self.max_members, 1):
            raise EdgeCommitteeError(f"combiner.max_members: {self.max_members!r} must be an integer >= 1")

    def to_dict(self) -> dict:
        return {"kind": "learned", **dataclasses.asdict(self)}


class CombinerFits:
    """Cross-fitted combiners of member sets on the validation split, fitted once per set.

    Args:
        val_logits: member name -> (N, C) validation logits.
        labels: (N,) validation labels (a learned combiner needs them).
        config: fitting options.
    """

    def __init__(self, val_logits: Mapping[str, np.ndarray], labels: np.ndarray | None,
                 config: CombinerConfig) -> None:
        if labels is None:
            raise EdgeCommitteeError("a learned combiner is fitted on validation labels, and this validation "
                                     "split has none; use combiner: average (or label the validation split)")
        self.logits = val_logits
        self.labels = np.asarray(labels, np.int64)
        self.config = config
        self._fits: dict[frozenset, tuple[tuple[str, ...], learned.CrossFit]] = {}
        self._lps = {n: learned.log_probs(x)[0] for n, x in val_logits.items()}

    def cross_fit(self, members: Sequence[str]) -> learned.CrossFit:
        """The cross-fit of ``members`` (rows in this order)."""
        key = frozenset(members)
        if key not in self._fits:
            members = tuple(members)
            parent = self._fits.get(frozenset(members[:-1]))
            init = self._reorder(*parent, members[:-1]) if parent and len(members) > 1 else None
            cf = learned.cross_fit([self.logits[n] for n in members], self.labels, self.config.folds,
                                   self.config.seed, self.config.l2, members, init)
            self._fits[key] = (members, cf)
        return self._reorder(*self._fits[key], tuple(members))

    @staticmethod
    def _reorder(order: tuple[str, ...], cf: learned.CrossFit, want: tuple[str, ...]) -> learned.CrossFit:
        if order == tuple(want):
            return cf
        idx = [order.index(n) for n in want]
        re = lambda c: learned.Combiner(c.weights[idx], c.bias, tuple(want))
        return learned.CrossFit(re(cf.combiner), [re(c) for c in cf.fold_combiners], cf.folds)

    def combiner(self, members: Sequence[str]) -> learned.Combiner:
        """The combiner of ``members`` fitted on the whole validation split (what is deployed)."""
        return self.cross_fit(members).combiner

    def stage_combiners(self, members: Sequence[str]) -> list[learned.Combiner]:
        """Stage ``k``'s combiner over ``members[:k+1]``, for every stage."""
        return [self.combiner(members[: k + 1]) for k in range(len(members))]

    def oof_probs(self, members: Sequence[str]) -> np.ndarray:
        """(N, C) out-of-fold combined probabilities of ``members`` on the validation split."""
        return self.cross_fit(members).oof_log_probs_combined([self._lps[n] for n in members])


@dataclasses.dataclass
class LearnedStageStats(StageStats):
    """:class:`.stats.StageStats` of a learned prefix; ``prob_sum`` holds the combined probs."""

    prefix: tuple[str, ...] = ()


class LearnedOutputs:
    """Stage statistics of learned combinations on one split (the :class:`.stats.SplitOutputs` API).

    Args:
        logits: member name -> (N, C) logits of the split.
        target: (N,) labels that count as correct, or None.
        kind: confidence function name.
        fits: the validation fits.
        out_of_fold: True on the validation split the fits were made on (each sample combined
            by the fold fit that did not see it); False elsewhere (the full fit, as deployed).
    """

    def __init__(self, logits: Mapping[str, np.ndarray], target: np.ndarray | None, kind: str,
                 fits: CombinerFits, out_of_fold: bool) -> None:
        ref.check_confidence_name(kind)
        self.kind = kind
        self.fits = fits
        self.out_of_fold = out_of_fold
        self.ok = {n: ref.finite_rows(x) for n, x in logits.items()}
        self.lps = fits._lps if out_of_fold else {n: learned.log_probs(x)[0] for n, x in logits.items()}
        first = next(iter(logits.values()))
        self.num_samples, self.num_classes = first.shape
        self.target = None if target is None else np.asarray(target, np.int64)

    def combined(self, members: Sequence[str]) -> np.ndarray:
        """(N, C) combined probabilities of the prefix ``members``."""
        if self.out_of_fold:
            return self.fits.oof_probs(members)
        return learned.combine_log_probs(self.fits.combiner(members), [self.lps[n] for n in members])

    def extend(self, prev: StageStats | None, name: str, stage: int) -> LearnedStageStats:
        """The state after appending member ``name`` as stage ``stage`` to ``prev``."""
        prefix = (getattr(prev, "prefix", ()) if prev is not None else ()) + (name,)
        if len(prefix) != stage + 1:
            raise ValueError(f"stage {stage} of a learned prefix needs the previous stages' statistics")
        ok = self.ok[name]
        contributed = ok if prev is None else prev.contributed | ok
        probs = self.combined(prefix)
        probs[~contributed] = 0
        conf = ref.confidence(probs, self.kind)
        label = np.where(contributed, probs.argmax(axis=-1), -1).astype(np.int64)
        correct = np.zeros(self.num_samples, bool) if self.target is None else label == self.target
        fields = {"prob_sum": probs, "conf": conf, "ok": ok, "label": label, "contributed": contributed,
                  "correct": correct}
        if "count" in StageStats.__dataclass_fields__:  # stages that contributed, as the plain statistics keep
            fields["count"] = (ok.astype(np.float32) if prev is None else prev.count + ok)
        return LearnedStageStats(**fields, prefix=prefix)

    def sequence(self, names: Sequence[str]) -> list[StageStats]:
        out: list[StageStats] = []
        for k, name in enumerate(names):
            out.append(self.extend(out[-1] if out else None, name, k))
        return out
