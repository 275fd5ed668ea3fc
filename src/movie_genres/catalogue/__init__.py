"""Catalogues: batch prediction over unlabeled films, streamed and resumable, locally or on Ray (above the predictor).

``read`` (sources, parts) -> ``batch`` (the one batch predictor) -> ``output`` (parts, stamp, assembly), run by
``job`` (predict) and ``encode`` (the feature cache), here or on Ray (``ray_engine``).
"""
from movie_genres.catalogue.errors import CatalogueError, EngineError, OutputBusy, OutputIncomplete, OutputMismatch

__all__ = ["CatalogueError", "EngineError", "OutputBusy", "OutputIncomplete", "OutputMismatch"]
