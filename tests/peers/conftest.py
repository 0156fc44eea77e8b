"""Peer cross-checks (Zennit, Captum, Quantus). Needs the ``[peers]`` extra; every test module
skips itself, with the reason, when a peer is not installed. ``_torch_nets`` (the Flax/torch
twins) imports as a plain module from this folder."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
