"""Storage tiers, one module each; each knows only ``stratacache.core``."""
