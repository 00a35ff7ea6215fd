"""Completion rules shared by the daemon, evaluation and training: retrieval, confidence features
and their per-repository fit, the typed-through memory. Imports the core only."""
