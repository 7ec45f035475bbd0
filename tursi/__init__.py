"""Tursi: deploy Hugging Face models to edge devices, converted for the hardware they run on."""

__version__ = "0.1.0"
