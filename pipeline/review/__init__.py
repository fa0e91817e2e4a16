"""The local web page where people review the machine's suggestions (``qcode review``)."""

from pipeline.review.app import create_app, serve
from pipeline.review.errors import ReviewError

__all__ = ["ReviewError", "create_app", "serve"]
