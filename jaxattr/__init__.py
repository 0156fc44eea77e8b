"""jaxattr: attribution (LRP, DeepLIFT, gradients) and explanation evaluation for JAX models.

Rules are ``jax.custom_vjp`` rewrites of a pure ``apply_fn(params, x) -> logits``; the model is
never changed by the user.

Example:
    >>> import jaxattr as ja
    >>> # R = ja.attribute(model.apply, params, x, method=ja.LRP(ja.composites.epsilon_plus_flat()))
"""

from . import composites as composites
from . import engine as engine
from . import evaluation as evaluation
from . import precision as precision
from . import rules as rules
from . import weight_norm as weight_norm
from . import xla as xla
from .api import attribute as attribute
from .api import checks_in_traces as checks_in_traces
from .api import explain as explain
from .engine import UnsupportedPrimitiveError as UnsupportedPrimitiveError
from .engine.batch import BatchCouplingError as BatchCouplingError
from .methods import LRP as LRP
from .methods import CompletenessWarning as CompletenessWarning
from .methods import DeconvNet as DeconvNet
from .methods import DeepLIFT as DeepLIFT
from .methods import DeepTaylor as DeepTaylor
from .methods import Gradient as Gradient
from .methods import GradientXInput as GradientXInput
from .methods import GuidedBackprop as GuidedBackprop
from .methods import IntegratedGradients as IntegratedGradients
from .methods import Method as Method
from .methods import SmoothGrad as SmoothGrad

__version__ = "0.1.0"

__all__ = ["attribute", "explain", "checks_in_traces", "Method", "Gradient", "GradientXInput", "IntegratedGradients",
           "SmoothGrad", "DeconvNet", "GuidedBackprop", "DeepTaylor", "LRP", "DeepLIFT", "rules",
           "composites", "engine", "evaluation", "precision", "weight_norm", "xla",
           "UnsupportedPrimitiveError",
           "BatchCouplingError", "CompletenessWarning"]
