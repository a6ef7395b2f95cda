"""Calibration data for INT8: readers, sample selection and the record stored in the bundle.

Installed as ``edge_committee.calibration`` (``setup.py`` maps this top-level folder).

- :func:`load_calibration` reads a :class:`CalibrationConfig` (a folder of images, an .npy/.npz
  array, the frames of a video, or a data split such as the example's IDX files) into a
  :class:`CalibrationSample`: the selected raw uint8 images and their :class:`CalibrationRecord`;
  ``sample.preprocess(member_preprocessing)`` gives one member's float32 inputs.
- :func:`select_indices`: ``count`` of ``n`` samples from ``seed``, stratified by label.
- :class:`CalibrationRecord`: source, files with sha256, selected indices, count, seed, method;
  JSON for the bundle, written atomically.
"""

from edge_committee.calibration.record import CalibrationRecord, sha256_file
from edge_committee.calibration.select import select_indices
from edge_committee.calibration.sources import (
    CalibrationConfig,
    CalibrationSample,
    count_video_frames,
    load_calibration,
    read_video_frames,
)

__all__ = [
    "CalibrationConfig",
    "CalibrationRecord",
    "CalibrationSample",
    "count_video_frames",
    "load_calibration",
    "read_video_frames",
    "select_indices",
    "sha256_file",
]
