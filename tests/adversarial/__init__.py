"""A catalogue of bad inputs across the library, the CLI and the app: each must end in a
clear message naming the bad value, never a raw traceback, and leave the weights unchanged."""
