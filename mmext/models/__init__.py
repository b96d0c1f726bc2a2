"""mmext models.  Nothing is imported here: the registry imports each area (recommenders,
backbones, heads, ...) when a config first names one of its types, so the recommenders never
pull in the vision toolboxes.  Import a subpackage directly to use its classes."""
