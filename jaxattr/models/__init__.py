"""Bundled models (pure Flax Linen modules; nothing here imports the engine)."""
from jaxattr.models.paper_cnn import PaperCNN as PaperCNN
from jaxattr.models.paper_cnn import small_paper_cnn as small_paper_cnn
from jaxattr.models.pooling import max_pool_2x2 as max_pool_2x2

__all__ = ["PaperCNN", "small_paper_cnn", "max_pool_2x2"]
