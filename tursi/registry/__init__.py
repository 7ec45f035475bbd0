"""TursiHub on any OCI registry: references, a distribution-API client and the artifact <-> OCI mapping."""
