"""Visualisers registered in the mmext scope (filled in as components land)."""
