"""Per-image metrics behind one contract and registry (base), one module per metric, and the batched job."""
