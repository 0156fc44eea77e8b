"""Explanation rules: small frozen dataclasses that declare how a segment's backward works."""

from .activation import Deconv as Deconv
from .activation import Guided as Guided
from .activation import Rescale as Rescale
from .deeplift import DeepLIFTMax as DeepLIFTMax
from .deeplift import RevealCancel as RevealCancel
from .deeplift import RevealCancelLinear as RevealCancelLinear
from .base import Gradient as Gradient
from .base import Group as Group
from .base import LayerRule as LayerRule
from .base import Norm as Norm
from .base import Pass as Pass
from .base import Rule as Rule
from .base import Term as Term
from .lrp import AlphaBeta as AlphaBeta
from .lrp import Epsilon as Epsilon
from .lrp import Flat as Flat
from .lrp import Gamma as Gamma
from .lrp import WSquare as WSquare
from .lrp import ZBox as ZBox
from .lrp import ZPlus as ZPlus
from .pooling import WinnerTakeAll as WinnerTakeAll
from .path import PathIntegral as PathIntegral
from .product import ConstantAttention as ConstantAttention
from .product import DeepLIFTNormalise as DeepLIFTNormalise
from .product import DeepLIFTProduct as DeepLIFTProduct
from .product import HoldScale as HoldScale
from .product import SignalTakeAll as SignalTakeAll
from .product import Uniform as Uniform
from .softmax import Constant as Constant
from .softmax import DeepLIFTSoftmax as DeepLIFTSoftmax
from .softmax import SoftmaxTaylor as SoftmaxTaylor

__all__ = ["Rule", "LayerRule", "Term", "Group", "Gradient", "Pass", "Norm", "Epsilon", "ZPlus",
           "AlphaBeta", "Gamma", "Flat", "WSquare", "ZBox", "Guided", "Deconv", "Rescale", "WinnerTakeAll"]
__all__ += ["DeepLIFTMax", "RevealCancel", "RevealCancelLinear", "DeepLIFTProduct", "DeepLIFTNormalise", "HoldScale", "Uniform",
            "SignalTakeAll"]
__all__ += ["ConstantAttention", "SoftmaxTaylor", "Constant", "PathIntegral", "DeepLIFTSoftmax"]
