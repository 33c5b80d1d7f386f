"""The offline demo: procedural models, a project-written prompt set, simulated raters (no weights, no network)."""
