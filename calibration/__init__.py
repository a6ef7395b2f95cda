"""Calibration data for INT8: readers, sample selection and the record stored in the bundle.

Installed as ``edge_committee.calibration`` (``setup.py`` maps this top-level folder).
"""
