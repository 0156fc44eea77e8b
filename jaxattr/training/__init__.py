"""Training of the reproduction: per-layer-group L2 (optax), early stopping,
vmapped grids of configurations, stratified cross-validation, orbax checkpoints.

Nothing here imports the attribution engine.
"""
from jaxattr.training.checkpoint import checkpoint_exists as checkpoint_exists
from jaxattr.training.checkpoint import load_checkpoint as load_checkpoint
from jaxattr.training.checkpoint import save_checkpoint as save_checkpoint
from jaxattr.training.configs import PAPER_DECAYS as PAPER_DECAYS
from jaxattr.training.configs import Config as Config
from jaxattr.training.configs import paper_configs as paper_configs
from jaxattr.training.cv import Fold as Fold
from jaxattr.training.cv import split_fold as split_fold
from jaxattr.training.cv import stratified_folds as stratified_folds
from jaxattr.training.early_stopping import EarlyStoppingState as EarlyStoppingState
from jaxattr.training.early_stopping import early_stopping_init as early_stopping_init
from jaxattr.training.early_stopping import (
    early_stopping_update as early_stopping_update,
)
from jaxattr.training.groups import GROUPS as GROUPS
from jaxattr.training.groups import group_mask as group_mask
from jaxattr.training.groups import layer_labels as layer_labels
from jaxattr.training.history import TrainHistory as TrainHistory
from jaxattr.training.l2 import adam_l2 as adam_l2
from jaxattr.training.l2 import coupled_l2 as coupled_l2
from jaxattr.training.l2 import grouped_adam_l2 as grouped_adam_l2
from jaxattr.training.l2 import l2_penalty as l2_penalty
from jaxattr.training.loop import evaluate as evaluate
from jaxattr.training.loop import init_params as init_params
from jaxattr.training.loop import train as train
from jaxattr.training.loop import train_grid as train_grid

__all__ = [
    "GROUPS",
    "PAPER_DECAYS",
    "Config",
    "EarlyStoppingState",
    "Fold",
    "TrainHistory",
    "adam_l2",
    "checkpoint_exists",
    "coupled_l2",
    "early_stopping_init",
    "early_stopping_update",
    "evaluate",
    "group_mask",
    "grouped_adam_l2",
    "init_params",
    "l2_penalty",
    "layer_labels",
    "load_checkpoint",
    "paper_configs",
    "save_checkpoint",
    "split_fold",
    "stratified_folds",
    "train",
    "train_grid",
]
