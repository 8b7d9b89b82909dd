"""Weightyard: a self-hosted hub for open-weight models."""

__version__ = "0.1.0"
