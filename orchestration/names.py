"""Every name that crosses a process boundary: MLflow tags, Tune result keys, run roles.

These are the wire format between the trial (producer) and the trackers, the
searcher, the console, `rrn report`, the MLflow UI and the tests (consumers); `rrn
submit` and the sweep driver agree on the RRN_* environment variables. They live in
one import-light module (no mlflow, no ray, no torch), imported by producer and
consumer alike, so a key can never be renamed on one side only.
"""

from __future__ import annotations

from rrn_core.constants import (BUDGET_EPOCHS_LABELED, BUDGET_EPOCHS_UNLABELED, BUDGET_ITERS,  # re-exported
                                BUDGET_STATED_AS, COMPUTE_DEVICE_SECONDS, COMPUTE_IMAGES_BWD,
                                COMPUTE_IMAGES_FWD, COMPUTE_TFLOP, LABELED_IMAGES, METHOD_NAME_KEY,
                                TRAIN_PREFIX, UNLABELED_IMAGES, VAL_PREFIX)

# --- MLflow's own tags (read by its UI)
TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
TAG_NOTE = "mlflow.note.content"          # the run's description, rendered as markdown
TAG_GIT_COMMIT_MLFLOW = "mlflow.source.git.commit"
#: The colour the UI draws a run in (tables, chart legends); set per method.
TAG_RUN_COLOR = "mlflow.runColor"
#: The UI opens an experiment in its GenAI (traces) view unless this says otherwise.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
#: Experiment tag prefix of a runs-table view the UI opens by `viewStateShareKey`.
TAG_SHARED_VIEW_PREFIX = "mlflow.sharedViewState."

# --- what a run is
TAG_ROLE = "rrn.role"
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
ROLE_TRAIN = "train"                      # a single `rrn train` run, outside any sweep

# --- the parent (sweep) run
TAG_SWEEP = "rrn.sweep"
TAG_SPACE = "rrn.space"
TAG_METRIC = "rrn.metric"
TAG_MODE = "rrn.mode"
TAG_SEARCH_KEYS = "rrn.search_keys"
TAG_GRID_KEYS = "rrn.grid_keys"
TAG_TRIAL_COUNT = "rrn.trial_count"
TAG_GIT_COMMIT = "rrn.git_commit"
TAG_DATASET_HASH = "rrn.dataset_hash"
TAG_SPLIT_HASH_PREFIX = "rrn.split_hash."
TAG_BEST_TRIAL = "rrn.best_trial"
TAG_BEST_RUN = "rrn.best_run"
TAG_COLLAPSED_COUNT = "rrn.collapsed_trials"   # how many trials ended collapsed

# --- a trial (child) run
TAG_TRIAL_ID = "rrn.trial_id"
TAG_METHOD = "rrn.method"
TAG_LABEL_RATIO = "rrn.label_ratio"
TAG_LABEL_COUNT = "rrn.label_count"
TAG_SEED = "rrn.seed"
TAG_SPLIT_SEED = "rrn.split_seed"
TAG_GRID_POINT = "rrn.grid_point"
TAG_EXECUTION = "rrn.execution"
TAG_CHECKPOINT = "rrn.checkpoint"
#: The run's backbone, its weights' source and the weights file's sha256 (orchestration/backbones.py).
TAG_BACKBONE = "rrn.backbone"
TAG_WEIGHTS = "rrn.weights"
TAG_WEIGHTS_SHA256 = "rrn.weights_sha256"
#: Ray node ids the trial ran on, in order (a restart on another node appends one).
TAG_NODES = "rrn.nodes"
TAG_RESUMED = "rrn.resumed"
#: "true" when the run's latest evaluation predicted one class (EvalResult.collapsed),
#: "false" otherwise; the steps of every collapsed evaluation go in TAG_COLLAPSED_AT.
TAG_COLLAPSED = "rrn.collapsed"
TAG_COLLAPSED_AT = "rrn.collapsed_at"
#: "true" | "false" | "unknown": whether the run's metric was still rising at its end
#: (rrn_core/convergence.py, against the run's own evaluation noise; `rrn report`
#: judges again against the trial's siblings); the rule's one line in TAG_CONVERGENCE.
TAG_STILL_IMPROVING = "rrn.still_improving"
TAG_CONVERGENCE = "rrn.convergence"

# --- a single `rrn train` run
#: A hash of the run's output folder, to find its MLflow run again when it resumes.
TAG_RUN_KEY = "rrn.run_key"

# --- artifacts
CONFIG_ARTIFACT = "config.yaml"

# --- metric names (rrn_core's EvalResult.as_metrics(prefix=VAL_PREFIX), the loop's train/ scalars)
METRIC_MIOU = "val/mIoU"                  # every sweep's default objective
METRIC_DOMINANT_SHARE = "val/dominant_share"
CLASS_IOU_PREFIX = "val/IoU/"             # + the class name (sanitised): per-class IoU

#: The health signals a report shows per method and label amount (the last logged
#: value of each trial, averaged): what RRN's critics keep and know, how often its
#: selection disagrees with the CPS target, and each loss term's share of the loss.
HEALTH_METRICS = ("train/pseudo_acc", "train/regions_kept", "train/critic_auroc",
                  "train/select_vs_cps_disagree")
LOSS_SHARE_PREFIX = "train/share_"

# --- Tune result keys a trial reports beside its evaluation metrics (`val/...`)
#: 1.0 when the evaluation is the run's last one (the searcher tells Optuna COMPLETE
#: only then; an early-stopped trial is PRUNED).
FULLY_TRAINED = "rrn/fully_trained"
STEP_KEY = "rrn/step"                  # the loop's step at this evaluation
TOTAL_STEPS_KEY = "rrn/total_steps"    # the run's length
WORLD_SIZE_KEY = "rrn/world_size"      # 2+ when the loop ran under a DDP process group
#: 1.0 when the evaluation's predictions cover one class (EvalResult.collapsed).
RESULT_COLLAPSED = "rrn/collapsed"
#: At the last evaluation: 1.0 when the metric was still rising (rrn_core/convergence.py,
#: against the run's own noise), 0.0 when not, NaN when the rule cannot say.
RESULT_STILL_IMPROVING = "rrn/still_improving"

# --- the config a trial receives from the searcher
POINT_KEY = "point"                    # index of the grid point
GRID_KEY = "grid"                      # the grid point's values {dotted key: value}
PARAMS_KEY = "params"                  # the values its Optuna study sampled

# --- environment set by `rrn submit` for the sweep it starts (explicit flags beat the file)
ENV_TRACKING_URI = "RRN_TRACKING_URI"
ENV_STORAGE_PATH = "RRN_STORAGE_PATH"
ENV_STORAGE_ENDPOINT = "RRN_STORAGE_ENDPOINT_URL"

# --- grid axes: the config fields that say *which* experiment a trial is
LABEL_RATIO_KEY = "data.label_ratio"
LABEL_COUNT_KEY = "data.label_count"
SEED_KEY = "runtime.seed"
SPLIT_SEED_KEY = "data.split_seed"
#: Axes that each trial shows in its own tag/column (method, label amount, seeds).
EXPERIMENT_AXES = (METHOD_NAME_KEY, LABEL_RATIO_KEY, LABEL_COUNT_KEY, SEED_KEY, SPLIT_SEED_KEY)
#: Axes a space may only grid (or fix), never search: searching them would let the
#: optimiser pick the label budget, the seed or the method.
GRID_ONLY = EXPERIMENT_AXES
