"""Model-level metrics: the math (stats, mmd), the feature extractors and the job."""
