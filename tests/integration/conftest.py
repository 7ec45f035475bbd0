"""Fixtures shared by the integration tests beyond tests/conftest.py."""

from tests.integration.registry_server import registry

__all__ = ["registry"]
