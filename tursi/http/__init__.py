"""HTTP plumbing shared by tursid and the workers: problem+json, request guards, connection deadlines,
rate limits, API keys, Prometheus metrics, OpenAPI documents and the streaming helper."""
