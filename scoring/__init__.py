"""The machine side: automatic metrics and generation (torch lives here)."""

from scoring import _compat  # noqa: F401  (must run before torchvision is imported)
