"""Peer cross-checks (Zennit, Captum, Quantus, LXT). Needs the ``[peers]`` extra (and ``pip
install --no-deps lxt``); every test module skips itself, with the reason, when a peer is not
installed — unless ``JAXATTR_REQUIRE_PEERS=1`` (what ``.ci/run`` sets): then a missing peer is an
error, so that a CI run cannot pass with the cross-checks silently skipped. ``_torch_nets`` (the
Flax/torch twins) imports as a plain module from this folder."""
import importlib
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

#: what the cross-checks import; torch and torchvision first (triton after jaxlib or TensorFlow
#: segfaults in this environment)
PEERS = ("torch", "torchvision", "zennit", "captum", "quantus", "lxt.explicit.functional")

if os.environ.get("JAXATTR_REQUIRE_PEERS") == "1":
    for name in PEERS:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"JAXATTR_REQUIRE_PEERS=1 but {name!r} does not import ({err}): "
                              "pip install -e '.[peers]' && pip install --no-deps lxt") from err
