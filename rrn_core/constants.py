"""Values that several parts of rrn_core must agree on, defined once.

`IGNORE_INDEX` is the label of pixels no loss or metric counts (VOC's object
outlines, padding of crops smaller than the crop size, Cityscapes' void classes);
readers write it, losses skip it, evaluation masks it. `CHECKPOINT_NAME` is the file
the loop commits its state to and every resume or `rrn eval` reads back.
"""

from __future__ import annotations

IGNORE_INDEX = 255
CHECKPOINT_NAME = "last.pt"

#: Metric-name prefixes: the loop's training scalars (`train/loss`) and evaluation
#: metrics (`val/mIoU`); orchestration/names.py re-exports them for the trackers.
TRAIN_PREFIX = "train/"
VAL_PREFIX = "val/"

#: The dotted key of the method's name: the config field a grid over methods sets.
METHOD_NAME_KEY = "method.name"

#: What a run spent (rrn_core/compute.py): cumulative totals logged with the training
#: scalars; and what its budget resolved to (rrn_core/budget.py), logged once as params.
COMPUTE_TFLOP = "compute/tflop"
COMPUTE_DEVICE_SECONDS = "compute/device_seconds"
COMPUTE_IMAGES_FWD = "compute/images_fwd"
COMPUTE_IMAGES_BWD = "compute/images_bwd"
BUDGET_ITERS = "budget/iters"
BUDGET_STATED_AS = "budget/stated_as"
BUDGET_EPOCHS_LABELED = "budget/epochs_labeled"
BUDGET_EPOCHS_UNLABELED = "budget/epochs_unlabeled"
LABELED_IMAGES = "data/labeled_images"
UNLABELED_IMAGES = "data/unlabeled_images"
