"""Helper library shared by every notebook: data layouts, transforms, models, training, metrics."""
from helpers import config

__all__ = ["config"]
