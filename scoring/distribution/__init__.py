"""Model-level metrics against a reference set: the math (stats, mmd), the feature extractors and the job."""
