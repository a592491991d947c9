"""I/O-free building blocks: entries, keys, serialization, errors, clocks, the Tier protocol."""
