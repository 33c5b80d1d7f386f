"""Make the CUDA-only torchvision 0.28.0 wheel importable on CPU torch.

The only torchvision 0.28.0 wheel is a CUDA build. On a CPU build of torch its
C++ ops are not registered, and ``import torchvision`` fails with
``operator torchvision::nms does not exist`` while registering the Python
fake kernels for ``nms``/``qnms``. Defining those two op schemas first lets
the import finish; the ops themselves are never called by this project.
This runs only when the normal import fails, so machines with a matching
torchvision are untouched.
"""

from __future__ import annotations

import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the op library alive for the life of the process


def ensure_torchvision() -> bool:
    """Import torchvision, defining the missing op schemas if needed; True if it imports."""
    global _library
    try:
        import torchvision

        return True
    except ModuleNotFoundError:
        return False
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch

    _library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _library.define(schema)
    import torchvision  # noqa: F401

    return True


try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # the web side installs without torch
    pass
else:
    ensure_torchvision()
