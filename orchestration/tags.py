"""MLflow tag and metric names: the wire format between the trackers, the report and the UI.

Everything that reads runs back (`rrn report`, the parent-run summary, the console,
the tests) finds trials through these keys, so they live in one import-light module
(no mlflow, no torch): the Tune trial code, the trackers and the report all import
the same names from here.
"""

from __future__ import annotations

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
#: Ray node ids the trial ran on, in order (a restart on another node appends one).
TAG_NODES = "rrn.nodes"
TAG_RESUMED = "rrn.resumed"
#: "true" when the run's latest evaluation predicted one class (EvalResult.collapsed),
#: "false" otherwise; the steps of every collapsed evaluation go in TAG_COLLAPSED_AT.
TAG_COLLAPSED = "rrn.collapsed"
TAG_COLLAPSED_AT = "rrn.collapsed_at"

# --- a single `rrn train` run
#: A hash of the run's output folder, to find its MLflow run again when it resumes.
TAG_RUN_KEY = "rrn.run_key"

# --- artifacts
CONFIG_ARTIFACT = "config.yaml"

# --- Tune result keys beside the evaluation metrics (read by the console)
#: 1.0 when the evaluation's predictions cover one class (EvalResult.collapsed).
RESULT_COLLAPSED = "rrn/collapsed"
