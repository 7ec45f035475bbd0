"""The serving worker: one process per deployment, loads a runtime and serves the inference API."""
