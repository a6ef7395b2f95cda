"""Data sources: raw uint8 images and labels from IDX, .npy/.npz and image folders."""

from edge_committee.data.readers import RawSplit, read_idx, read_image, read_split

__all__ = ["RawSplit", "read_idx", "read_image", "read_split"]
