"""One network, two frameworks: Flax Linen models and their PyTorch twins from one set of weights.

Used by the peer cross-checks (``tests/peers``) and by ``benchmarks/peers.py`` (which puts this
folder on ``sys.path``). Needs the ``[peers]`` extra (torch, zennit).

Layouts:

* images: jax NHWC ↔ torch NCHW (:func:`to_torch`, :func:`to_numpy`);
* conv kernels: Flax HWIO ↔ torch OIHW (``kernel.transpose(3, 2, 0, 1)``);
* dense kernels: Flax ``(in, out)`` ↔ torch ``Linear.weight`` ``(out, in)`` (transposed);
* flatten order: Flax flattens NHWC, so feature ``(h, w, c)`` sits at ``(h·W + w)·C + c``;
  ``torch.nn.Flatten`` on NCHW puts it at ``c·H·W + h·W + w``. Instead of permuting the
  activations in torch (a module the peers' hooks would see), the rows of the first dense kernel
  are permuted (:func:`flatten_rows`), so the torch nets stay plain ``nn.Sequential``-style
  stacks of modules with one module per use (what Captum's DeepLift and Zennit's canonizers need).

Three architectures (:data:`NETS`):

* ``"dense"``: an MLP (``Dense–ReLU–Dense–ReLU–Dense``) on flat inputs;
* ``"paper_cnn"``: :func:`jaxattr.models.paper_cnn.small_paper_cnn` (3 blocks of two 3×3 SAME conv
  + ReLU and a 2×2 max pool, dense, dense) — or the full :class:`PaperCNN` via :func:`paper_cnn`;
* ``"resnet_bn"``: conv–BN–ReLU, a residual block conv–BN + skip add, ReLU, 2×2 average pool,
  dense, dense (:class:`ResBNNet`), batch norm in inference mode. In torch the skip add is a
  ``zennit.layer.Sum`` over the stacked branches, so Zennit's composites put ``Norm`` on it, as
  jaxattr does on every sum of two x-dependent tensors.

Biases (and the batch-norm statistics) are random, not Flax's zeros, so the rules' bias
handling is exercised.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
import torch  # before jax: triton (reached through torch._dynamo) segfaults if jaxlib loaded first
from zennit.layer import Sum

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxattr.models.paper_cnn import PaperCNN, small_paper_cnn

NETS = ("dense", "paper_cnn", "resnet_bn")


# --------------------------------------------------------------------------------------------
# Flax models
# --------------------------------------------------------------------------------------------

class MLP(nn.Module):
    """``Dense(16)–ReLU–Dense(12)–ReLU–Dense(classes)`` on ``(batch, features)`` inputs."""

    widths: Sequence[int] = (16, 12)
    num_classes: int = 5

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.widths):
            x = nn.relu(nn.Dense(width, name=f"dense{i + 1}")(x))
        return nn.Dense(self.num_classes, name=f"dense{len(self.widths) + 1}")(x)


class ResBNNet(nn.Module):
    """conv1–BN–ReLU → [conv2–BN] + skip → ReLU → 2×2 average pool → dense–ReLU → dense.

    Batch norm in inference mode (running statistics), as the engine folds it into the preceding
    convolution and Zennit's ``SequentialMergeBatchNorm`` canonizer merges it."""

    channels: int = 6
    dense: int = 16
    num_classes: int = 5
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x):
        bn = lambda name: nn.BatchNorm(use_running_average=True, epsilon=self.bn_epsilon, name=name)
        h = nn.relu(bn("bn1")(nn.Conv(self.channels, (3, 3), padding="SAME", name="conv1")(x)))
        r = bn("bn2")(nn.Conv(self.channels, (3, 3), padding="SAME", name="conv2")(h))
        h = nn.relu(h + r)
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        h = h.reshape(h.shape[0], -1)
        h = nn.relu(nn.Dense(self.dense, name="dense1")(h))
        return nn.Dense(self.num_classes, name="dense2")(h)


# --------------------------------------------------------------------------------------------
# torch twins
# --------------------------------------------------------------------------------------------

class TorchResBN(torch.nn.Module):
    """The torch twin of :class:`ResBNNet`. Modules are registered in forward order (Zennit's
    ``SequentialMergeBatchNorm`` pairs a batch norm with the linear leaf right before it)."""

    def __init__(self, in_channels, channels, height, width, dense, num_classes, bn_epsilon=1e-5):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, channels, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(channels, eps=bn_epsilon)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(channels, eps=bn_epsilon)
        self.add = Sum(dim=-1)
        self.relu2 = torch.nn.ReLU()
        self.pool = torch.nn.AvgPool2d(2)
        self.flatten = torch.nn.Flatten()
        self.dense1 = torch.nn.Linear(channels * (height // 2) * (width // 2), dense)
        self.relu3 = torch.nn.ReLU()
        self.dense2 = torch.nn.Linear(dense, num_classes)

    def forward(self, x):
        h = self.relu1(self.bn1(self.conv1(x)))
        r = self.bn2(self.conv2(h))
        h = self.relu2(self.add(torch.stack([h, r], dim=-1)))
        h = self.flatten(self.pool(h))
        return self.dense2(self.relu3(self.dense1(h)))


class Clone(torch.nn.Module):
    """``x.clone()``: a new tensor between two hooked modules. Captum's DeepLift hooks a module's
    input *and* output tensors; when a ReLU's output is the max pool's input (adjacent modules)
    both hooks sit on one tensor and the ReLU reads the max pool's gradient before the max-pool
    rule rewrote it, so the max pool silently falls back to its gradient (captum#1104). A
    ``Clone`` between them is the workaround."""

    def forward(self, x):
        return x.clone()


def dead_channels(variables, bias: float = -10.0):
    """Channel 0 of every block's second conv dead (bias ``bias``): its max-pool windows are all
    0, i.e. tied, for inputs in [0, 1]. Tie handling shows in methods that send signal into dead
    ReLUs (DeconvNet; LRP rules that ignore the input: flat, w², z^B on hidden layers); jaxattr
    and torch both route a tie to the first maximum of the window."""
    p = {k: dict(v) for k, v in variables["params"].items()}
    for name in p:
        if name.endswith("_conv2"):
            b = np.array(p[name]["bias"])
            b[0] = bias
            p[name]["bias"] = b
    return {**variables, "params": p}


def nonpositive_conv_biases(variables):
    """Every conv bias made ≤ 0 (``−|b|``): at the zero reference every activation of the conv
    stack is then 0, so every max-pool window ties at the reference and y ≥ y₀. There Captum's
    DeepLift max-pool rule, jaxattr's ``"gradient"``, ``"scaled_gradient"`` and ``"interpolate"``
    all reduce to the gradient: the like-for-like DeepLIFT network of ``benchmarks/peers.py``."""
    def visit(path, a):
        names = [getattr(k, "key", "") for k in path]
        return -np.abs(a) if names[-1] == "bias" and "conv" in names[-2] else a
    return jax.tree_util.tree_map_with_path(visit, variables)


def _t(a, dtype):
    return torch.tensor(np.ascontiguousarray(np.asarray(a)), dtype=dtype)


def conv_weight(kernel) -> np.ndarray:
    """Flax HWIO kernel -> torch OIHW weight."""
    return np.asarray(kernel).transpose(3, 2, 0, 1)


def flatten_rows(kernel, height: int, width: int, channels: int) -> np.ndarray:
    """Rows of a dense kernel that reads an NHWC flatten, reordered for an NCHW flatten:
    ``out[c·H·W + h·W + w] = kernel[(h·W + w)·C + c]``."""
    kernel = np.asarray(kernel)
    return kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3).reshape(kernel.shape)


def _load_conv(module, p, dtype):
    module.weight.data = _t(conv_weight(p["kernel"]), dtype)
    module.bias.data = _t(p["bias"], dtype)


def _load_dense(module, p, dtype, rows=None):
    kernel = np.asarray(p["kernel"]) if rows is None else flatten_rows(p["kernel"], *rows)
    module.weight.data = _t(kernel.T, dtype)
    module.bias.data = _t(p["bias"], dtype)


def _load_bn(module, p, stats, dtype):
    module.weight.data = _t(p["scale"], dtype)
    module.bias.data = _t(p["bias"], dtype)
    module.running_mean.data = _t(stats["mean"], dtype)
    module.running_var.data = _t(stats["var"], dtype)


def torch_mlp(variables, dtype=torch.float64) -> torch.nn.Module:
    p = variables["params"]
    names = sorted(p, key=lambda n: int(n[len("dense"):]))
    layers = []
    for i, name in enumerate(names):
        fan_in, fan_out = np.asarray(p[name]["kernel"]).shape
        lin = torch.nn.Linear(fan_in, fan_out)
        _load_dense(lin, p[name], dtype)
        layers += [lin] + ([torch.nn.ReLU()] if i < len(names) - 1 else [])
    return torch.nn.Sequential(*layers).to(dtype).eval()


def torch_paper_cnn(variables, in_shape, dtype=torch.float64, clone_before_pool=False) -> torch.nn.Module:
    """The torch twin of a :class:`PaperCNN` (any ``features``/``dense``); ``in_shape`` = (H, W, C).
    ``clone_before_pool``: a :class:`Clone` between each ReLU and max pool (captum#1104)."""
    p = variables["params"]
    height, width, channels = in_shape
    layers = []
    block = 1
    while f"block{block}_conv1" in p:
        for conv in (1, 2):
            q = p[f"block{block}_conv{conv}"]
            out = np.asarray(q["kernel"]).shape[-1]
            layer = torch.nn.Conv2d(channels, out, 3, padding=1)
            _load_conv(layer, q, dtype)
            layers += [layer, torch.nn.ReLU()]
            channels = out
        layers += [Clone()] if clone_before_pool else []
        layers.append(torch.nn.MaxPool2d(2))
        height, width, block = height // 2, width // 2, block + 1
    dense1 = torch.nn.Linear(height * width * channels, np.asarray(p["dense1"]["kernel"]).shape[1])
    _load_dense(dense1, p["dense1"], dtype, rows=(height, width, channels))
    dense2 = torch.nn.Linear(*np.asarray(p["dense2"]["kernel"]).shape)
    _load_dense(dense2, p["dense2"], dtype)
    layers += [torch.nn.Flatten(), dense1, torch.nn.ReLU(), dense2]
    return torch.nn.Sequential(*layers).to(dtype).eval()


def torch_resnet_bn(variables, in_shape, dtype=torch.float64, bn_epsilon=1e-5) -> torch.nn.Module:
    p, stats = variables["params"], variables["batch_stats"]
    height, width, channels = in_shape
    width_c = np.asarray(p["conv1"]["kernel"]).shape[-1]
    dense, classes = np.asarray(p["dense2"]["kernel"]).shape
    net = TorchResBN(channels, width_c, height, width, dense, classes, bn_epsilon)
    _load_conv(net.conv1, p["conv1"], dtype)
    _load_conv(net.conv2, p["conv2"], dtype)
    _load_bn(net.bn1, p["bn1"], stats["bn1"], dtype)
    _load_bn(net.bn2, p["bn2"], stats["bn2"], dtype)
    _load_dense(net.dense1, p["dense1"], dtype, rows=(height // 2, width // 2, width_c))
    _load_dense(net.dense2, p["dense2"], dtype)
    return net.to(dtype).eval()


# --------------------------------------------------------------------------------------------
# pairs
# --------------------------------------------------------------------------------------------

def to_torch(x, dtype=None) -> torch.Tensor:
    """A jax/numpy batch -> torch: NHWC images to NCHW, flat inputs unchanged."""
    a = np.asarray(x)
    if a.ndim == 4:
        a = a.transpose(0, 3, 1, 2)
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if dtype is None else t.to(dtype)


def to_numpy(t) -> np.ndarray:
    """A torch batch -> numpy in jax's layout (NCHW images to NHWC)."""
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def init_variables(model, in_shape, seed: int, bias_scale: float = 0.1, dtype=np.float64):
    """Random variables for a Linen ``model`` on inputs of one example's shape ``in_shape``, drawn
    with numpy (only the shapes come from jax, by ``jax.eval_shape``, so nothing is compiled):
    kernels N(0, 1/fan_in), biases N(0, bias_scale²) (Flax would start them at zero, which would
    leave the rules' bias handling untested), batch norms with a random scale of both signs, a
    random shift and random running statistics."""
    x = jax.ShapeDtypeStruct((1,) + tuple(in_shape), dtype)
    shapes = jax.eval_shape(lambda a: model.init(jax.random.key(0), a), x)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        names = [getattr(k, "key", str(k)) for k in path]
        shape = leaf.shape
        if names[0] == "batch_stats":
            a = rng.uniform(0.5, 2.0, shape) if names[-1] == "var" else rng.normal(0.0, 0.2, shape)
        elif names[-1] == "bias":
            a = rng.normal(0.0, bias_scale, shape)
        elif names[-1] == "scale":
            a = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.5, shape)
        else:
            a = rng.normal(0.0, 1.0, shape) / np.sqrt(np.prod(shape[:-1]))
        return np.asarray(a, dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@dataclasses.dataclass
class Pair:
    """A Flax model and its torch twin, built from one set of weights."""

    name: str
    apply_fn: Callable           # jax: (variables, x NHWC or flat) -> logits
    variables: Any               # jax pytree
    torch_model: torch.nn.Module
    in_shape: tuple              # one example's shape in jax layout
    box: tuple = (0.0, 1.0)      # the data range of the inputs this pair is tested on

    def inputs(self, batch: int, seed: int, dtype=np.float64) -> np.ndarray:
        """Random inputs in the box (uniform, so max-pool windows have no ties)."""
        rng = np.random.default_rng(seed)
        return rng.uniform(*self.box, (batch,) + tuple(self.in_shape)).astype(dtype)


def make_pair(name: str, *, seed: int = 0, dtype=np.float64, in_shape=None, model=None,
              transform=None, clone_before_pool=False) -> Pair:
    """Build one of :data:`NETS` (or ``"paper_cnn_full"``: the full-size :class:`PaperCNN`) in
    ``dtype`` on both sides. jax arrays are float64 only under ``jax.enable_x64(True)``: build
    and run float64 pairs inside that context. ``model`` replaces the Flax module (same parameter
    names); ``transform(variables) -> variables`` edits the weights before both sides are built."""
    tdtype = {np.float64: torch.float64, np.float32: torch.float32}[np.dtype(dtype).type]
    if name == "dense":
        model = model or MLP()
        in_shape = in_shape or (10,)
    elif name == "paper_cnn":
        model = model or small_paper_cnn(num_classes=5)
        in_shape = in_shape or (16, 16, 3)
    elif name == "paper_cnn_full":
        model = model or PaperCNN()
        in_shape = in_shape or (32, 32, 3)
    elif name == "resnet_bn":
        model = model or ResBNNet()
        in_shape = in_shape or (8, 8, 3)
    else:
        raise ValueError(f"unknown net {name!r}: one of {NETS + ('paper_cnn_full',)}")
    variables = dict(init_variables(model, in_shape, seed, dtype=dtype))
    if transform is not None:
        variables = dict(transform(variables))
    variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), variables)
    if name == "dense":
        tmodel = torch_mlp(variables, tdtype)
    elif name.startswith("paper_cnn"):
        tmodel = torch_paper_cnn(variables, in_shape, tdtype, clone_before_pool)
    else:
        tmodel = torch_resnet_bn(variables, in_shape, tdtype, model.bn_epsilon)
    return Pair(name, model.apply, variables, tmodel, tuple(in_shape))


_FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_LOGITS = {}


def jax_logits(pair: Pair, x) -> np.ndarray:
    """``pair.apply_fn(pair.variables, x)``, jitted once per (apply_fn, shape, dtype) with XLA's
    cheap optimisation level (an eager Flax apply compiles every op separately)."""
    x = jnp.asarray(x)
    key = (pair.apply_fn, x.shape, str(x.dtype))
    if key not in _LOGITS:
        _LOGITS[key] = jax.jit(pair.apply_fn).lower(pair.variables, x).compile(compiler_options=_FAST)
    return np.asarray(_LOGITS[key](pair.variables, x))


def torch_logits(pair: Pair, x) -> np.ndarray:
    with torch.no_grad():
        return pair.torch_model(to_torch(x)).numpy()


def zennit_attribute(model, x, target, composite) -> torch.Tensor:
    """Zennit LRP with jaxattr's seed: ``grad_output = onehot(target) · output`` (the target
    logit's value), through ``zennit.attribution.Gradient``. ``x``: a torch batch."""
    from zennit.attribution import Gradient

    target = torch.as_tensor(np.asarray(target))

    def seed(out):
        return torch.nn.functional.one_hot(target, out.shape[-1]).to(out) * out

    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x.detach().requires_grad_(True), seed)
    return relevance


def jit_all(apply_fn, variables, x, methods: dict, target=None, fast: bool = True) -> dict:
    """``{name: ja.attribute(apply_fn, variables, x, target, method)}`` as ONE compiled program
    (compilation dominates on tiny nets). ``fast`` compiles with XLA's cheap optimisation level."""
    import jaxattr as ja

    names = list(methods)

    def run(v, xx, t):
        return [ja.attribute(apply_fn, v, xx, target=t, method=methods[n]) for n in names]

    lowered = jax.jit(run).lower(variables, x, target)
    compiled = lowered.compile(compiler_options=_FAST if fast else None)
    return dict(zip(names, (np.asarray(r) for r in compiled(variables, x, target))))


__all__ = ["NETS", "MLP", "ResBNNet", "TorchResBN", "Clone", "dead_channels", "nonpositive_conv_biases",
           "Pair", "make_pair", "to_torch", "to_numpy", "zennit_attribute",
           "conv_weight", "flatten_rows", "torch_mlp", "torch_paper_cnn", "torch_resnet_bn",
           "torch_logits", "jax_logits", "init_variables", "jit_all"]
