"""Runtime packs: everything a device needs to serve, as aarch64 wheels in one file, built on the workstation.

A pack is a tar holding ``tursi-pack/``: ``pack.json`` (the manifest), ``wheels/`` (tursi[serve] and every
dependency for one Python, plus llama-cpp-python cross-compiled for the target's CPU), ``install-device.sh``,
``systemd/tursid.service`` and ``verify-pack.py`` (stdlib only: checks the pack against the device before anything
is installed). Building one is workstation code: pip downloads and a cross-compiler, no daemon.
"""
