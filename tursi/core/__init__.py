"""Bottom layer: errors, settings, the deployment spec, planning, model references, hardware.

Imports nothing from ``tursi.http``, ``tursi.client``, ``tursi.cli``, ``tursi.daemon`` or ``tursi.worker``
(tests/unit/test_layers.py)."""
