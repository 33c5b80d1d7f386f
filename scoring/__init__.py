"""The machine side: automatic metrics and generation (torch lives here).

Importing the package does nothing: a module that imports torchvision, directly or
through open_clip, transformers, diffusers or torch-fidelity, imports
:mod:`scoring._compat` first itself.
"""
