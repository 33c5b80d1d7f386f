"""Per-image metrics: one contract and registry (base), a module per metric, the batch job."""
