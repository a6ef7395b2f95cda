"""Self-training (Noisy Student) of a bundle's member on the deployment's unlabeled footage.

:func:`adapt` (``edge-committee adapt``): the committee labels the footage, a member is
fine-tuned with noise on it plus labeled data, and is swapped in only if its validation
accuracy does not drop; the cascade is then re-selected. See :mod:`.adapt`.
"""

from edge_committee.adapt.adapt import AdaptResult, adapt
from edge_committee.adapt.pseudo import PseudoLabels, read_unlabeled, select_pseudo_labels, teacher_probs
from edge_committee.adapt.student import NoiseConfig, finetune

__all__ = ["AdaptResult", "NoiseConfig", "PseudoLabels", "adapt", "finetune", "read_unlabeled",
           "select_pseudo_labels", "teacher_probs"]
