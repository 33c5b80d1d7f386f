"""Tiny stand-in models written in the real file formats, for tests and benchmarks.

``tiny_clip`` (a CLIP and an aesthetic head), ``tiny_diffusers`` (a Stable Diffusion
pipeline), ``tiny_extractors`` (Inception-v3, CLIP ViT-L/14@336, DINOv2) and
``tiny_scorers`` (HPSv2, PickScore, the ONNX tagger, and a weights folder holding every
image metric's files, for ``benchmarks/gpu_check.py --tiny``) save randomly initialised
models that load through the same code as real weights, so the loading and scoring
paths are tested without downloading anything.

The product imports this package in one place only, on purpose: the offline demo
(``arena.demo.model_metrics``) uses ``tiny_extractors.write_all`` for its stand-in
feature extractors, since the demo must run without weights, and labels every number
they give (the ``demo-random`` tag). Nothing else under ``arena/`` or ``scoring/``
imports it; ``tests/test_import_rules.py`` checks that.
"""
