"""Filled in as the components of later issues land."""
