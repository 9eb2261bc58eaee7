"""Overheard: membership and dataset inference audits for audio models."""

__version__ = "0.1.0"
