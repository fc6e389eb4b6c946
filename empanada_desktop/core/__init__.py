"""Plain-data layer: numpy and the standard library only (no torch, no Qt)."""
