"""Fixtures shared by the integration tests beyond tests/conftest.py."""

from tests.integration.registry_server import registry, token_registry

__all__ = ["registry", "token_registry"]
