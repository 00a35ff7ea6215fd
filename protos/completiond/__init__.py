"""completiond: a local code-completion daemon that learns one repository."""

__version__ = "0.1.0"
