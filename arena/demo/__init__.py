"""The offline demo: procedural models, a prompt set, simulated raters (no weights, no network)."""
