"""The engine: the ``Cache`` over a stack of tiers, and the sync facade. Imports no concrete tier."""
