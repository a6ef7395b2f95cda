"""Tensors across the Triton Python backend's boundary, always through DLPack.

The Python-backend stub of Triton 2.51 (the one ``nvidia-pytriton`` ships) is built with a
pybind11 older than NumPy 2: with NumPy 2 installed, ``pb_utils.Tensor(name, array)`` makes an
empty tensor and ``Tensor.as_numpy()`` repeats the first element (checked here with NumPy 2.4).
DLPack hands over only a pointer, a shape and a type code, so it is right under NumPy 1 and 2,
and it copies nothing. Every tensor of the exported models crosses with these two functions.
"""

from __future__ import annotations

import ctypes

import numpy as np

#: the name NumPy's capsule destructor recognizes as "consumed" (numpy/_core/src/.../dlpack.h)
_USED = b"used_dltensor"
_set_capsule_name = ctypes.pythonapi.PyCapsule_SetName
_set_capsule_name.argtypes = [ctypes.py_object, ctypes.c_char_p]
_set_capsule_name.restype = ctypes.c_int


def as_array(tensor) -> np.ndarray:
    """A ``pb_utils.Tensor`` (request input or BLS output) as a NumPy array, without a copy.

    The array keeps the tensor alive; copy it (``astype``) before the request or response goes.
    """
    return np.from_dlpack(tensor)


def to_tensor(pb_utils, name: str, array: np.ndarray):
    """A ``pb_utils.Tensor`` named ``name`` holding ``array`` (made C-contiguous), without a copy."""
    array = np.ascontiguousarray(array)
    capsule = array.__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    # Triton takes the DLManagedTensor (and frees it with the tensor) but renames the capsule
    # "used_dlpack", which NumPy's capsule destructor does not know: it would print a ValueError
    # for every tensor. Give the capsule the name NumPy uses for "consumed".
    _set_capsule_name(capsule, _USED)
    return tensor
