"""Metrics registered in the mmext scope."""
