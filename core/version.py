"""The installed version, from the package metadata (set in pyproject.toml only)."""

from importlib.metadata import version

__version__ = version("completiond")
