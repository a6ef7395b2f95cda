"""The cascade of an edge_committee bundle as a Triton BLS model (written by ``export-triton``).

Raw uint8 images ``images`` [N, H, W, 1|3] in (a video bundle: ``clips`` [N, T, H, W, 1|3]); a
classifier's ``labels``, ``confidence``, ``exit_stage``, ``flags`` [N, 1] and ``probs`` [N, C] out
(each task's outputs: ``edge_committee/serve/triton/tasks.py``). The loop is the SDK's own host loop, from the copy of
``edge_committee`` in ``_sdk/`` beside this file (see ``edge_committee/serve/triton/bls.py``);
``cascade.json`` describes the members, preprocessing, thresholds and labels.
"""

import os
import sys

# this export's copy of the SDK first, even where another edge_committee is installed
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sdk"))

from edge_committee.serve.triton.bls import CascadeBLS as TritonPythonModel

__all__ = ["TritonPythonModel"]
