"""completiond: a local code-completion daemon that learns one repository.

The package's parts live in the repository's top-level folders (see pyproject.toml): core,
completion, training, daemon, evaluation and clients, each importing only the ones before it.
"""
