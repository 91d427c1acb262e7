"""What `rrn train` may continue: the checkpoint's config against the one given now.

A resume loads weights, optimiser, step and RNG state from `{output_dir}/checkpoints/
last.pt` and trains on with the config it is given. If that config differs from the
one the checkpoint was trained with (a new learning rate, a new label ratio and so a
new split), the run is neither the old one nor a new one: the checkpoint says one
thing, the tracked params another. So a resume refuses a changed config, naming each
field with its old and new value, and the user chooses: restore the old values, train
a new run elsewhere, or `--fork`: a new run in a new output folder that starts from
the old checkpoint with the new settings (the old run is left as it is).

Only fields that say where or how visibly a run executes may change
(`FREE_ON_RESUME`); every other field is compared. The default output folder is
derived from the same comparison (`default_output_dir`: the config's name plus a hash
of every compared field), so two different configs never resume each other by default.
Everything here reads and checks; nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from rrn_core.checkpoint import checkpoint_exists
from rrn_core.config import RunConfig, flatten
from rrn_core.constants import CHECKPOINT_NAME
from rrn_core.run_checks import PreflightError, checkpoint_url, read_checkpoint

#: Fields a resumed run may change: where it writes, what it prints, where it runs.
FREE_ON_RESUME = ("runtime.output_dir", "runtime.resume", "runtime.progress", "runtime.log_every",
                  "runtime.storage_options", "runtime.device", "data.num_workers")
#: What a fork must keep: the network the checkpoint's weights belong to.
KEPT_BY_FORK = ("model.", "method.name")
_MISSING = "(not set)"


def compared_fields(tree: dict[str, Any]) -> dict[str, Any]:
    """The dotted fields of a config tree a resume compares (FREE_ON_RESUME left out)."""
    return {k: v for k, v in flatten(tree).items()
            if not any(k == f or k.startswith(f + ".") for f in FREE_ON_RESUME)}


def changed_fields(saved: dict[str, Any], cfg: RunConfig) -> list[tuple[str, Any, Any]]:
    """(field, checkpoint's value, new value) for every compared field that differs."""
    old = compared_fields(saved)
    new = compared_fields(cfg.model_dump(mode="json"))
    return [(k, old.get(k, _MISSING), new.get(k, _MISSING)) for k in sorted(set(old) | set(new))
            if old.get(k, _MISSING) != new.get(k, _MISSING)]


def default_output_dir(cfg: RunConfig) -> str:
    """`runs/<name>-<hash of every compared field>`: one folder per distinct config."""
    identity = json.dumps(compared_fields(cfg.model_dump(mode="json")), sort_keys=True, default=str)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.name).strip("-.") or "run"
    return f"runs/{slug}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def _describe(changes: list[tuple[str, Any, Any]]) -> str:
    return "; ".join(f"{k}: {old!r} in the checkpoint, {new!r} now" for k, old, new in changes)


def start_checkpoint(cfg: RunConfig, fork_from: str | None = None) -> tuple[str | None, str]:
    """Where the run starts: (checkpoint url or None for a fresh start, a line saying so).

    Its own checkpoint (when `runtime.resume`) must have been trained with the same
    config; `fork_from` (a checkpoint, checkpoints/ folder or run folder) is used only
    when the output folder holds no checkpoint yet, and must hold the same network.
    Raises PreflightError (nothing written) on a changed config, an unreadable
    checkpoint (a zero-byte last.pt included) or a fork onto its own folder.
    """
    rt = cfg.runtime
    own = f"{rt.output_dir.rstrip('/')}/checkpoints/{CHECKPOINT_NAME}"
    if rt.resume and checkpoint_exists(own, rt.storage_options):
        state = read_checkpoint(own, rt.storage_options)
        changes = changed_fields(state["config"], cfg)
        if changes:
            raise PreflightError(
                f"{own}: runtime.output_dir {rt.output_dir} holds a run trained with other settings "
                f"({_describe(changes)}); resuming it would mix the two. Restore those values to "
                f"resume it, give another --output-dir for a new run, or add --fork {rt.output_dir} "
                "--output-dir NEW to start a new run from its checkpoint with the new settings")
        note = f"resuming {own} at step {state.get('step', '?')}"
        return own, note + (f" (its own checkpoint; --fork {fork_from} not used)" if fork_from else "")
    if not fork_from:
        return None, "starting afresh"
    source = checkpoint_url(fork_from)
    if source.rstrip("/") == own:
        raise PreflightError(f"--fork {fork_from}: that is this run's own output folder; give a new "
                             "--output-dir for the forked run")
    state = read_checkpoint(fork_from, rt.storage_options)
    changes = changed_fields(state["config"], cfg)
    clash = [c for c in changes if c[0].startswith(KEPT_BY_FORK)]
    if clash:
        raise PreflightError(f"--fork {source}: a fork keeps the checkpoint's network, but "
                             f"{_describe(clash)}")
    what = _describe(changes) if changes else "no setting changed"
    return source, f"forking {source} at step {state.get('step', '?')} into {rt.output_dir} ({what})"
