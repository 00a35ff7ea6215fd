"""Clients of the daemon: the Python client library and the `completiond` command line."""
