"""Drawing what a model does: visualizers in mmext's scope and the embedding-trajectory maths.

Core only (mmengine, matplotlib, numpy): a recommender install imports this package without the
vision stack; detection and segmentation samples are read by duck typing.
"""
