"""Bundled models (pure Flax Linen modules; nothing here imports the engine)."""
from jaxattr.models.conv import patches_conv as patches_conv
from jaxattr.models.paper_cnn import PaperCNN as PaperCNN
from jaxattr.models.paper_cnn import small_paper_cnn as small_paper_cnn
from jaxattr.models.pooling import max_pool_2x2 as max_pool_2x2

__all__ = ["PaperCNN", "max_pool_2x2", "patches_conv", "small_paper_cnn"]
