"""Clients of the daemon: the Python client library, the `completiond` command line, the LSP
bridge, shell integration."""
