"""Foundations: bounded parsing and messages, operator limits, the cache root, the line for the shared
model, YAML files of settings, the engine's exceptions.

May import: the standard library and third-party packages only — nothing else from editlab.
"""
