"""RRN as the paper's release configures it: a named preset, runnable beside `rrn`.

`rrn`'s defaults are what our measurements support (docs/method.md, "RRN against
CPS"); this method keeps the release's choices so that a sweep can put the two side
by side (`method.name: [rrn, rrn_release]`) and a user can reproduce the paper's
setting by name:

- the critics learn one-hot ground truth against predictions (`objective: adversarial`);
- the selection terms are normalised by the kept pixel count (`select_per: kept`);
- the selection, cross-check and CPS terms are each added at their own weight
  (`pseudo_label_weight: added`), w_select 1, w_fm 0.1, tau_region 0.6.

Our collapse guard (`unsup_rampup`) stays on: without it CPS and RRN collapse to one
class on scratch networks (docs/method.md, "The collapse guard").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rrn_core.methods.rrn import RRN, RRNConfig
from rrn_core.models.discriminator import DiscriminatorConfig


class ReleaseDiscriminatorConfig(DiscriminatorConfig):
    """The release's critic objective by default, also when a config gives other fields."""

    objective: Literal["adversarial", "accuracy"] = "adversarial"


class RRNReleaseConfig(RRNConfig):
    """`rrn`'s fields with the release's values as defaults."""

    name: Literal["rrn_release"] = "rrn_release"  # type: ignore[assignment]
    select_per: Literal["kept", "valid"] = "kept"
    pseudo_label_weight: Literal["added", "shared"] = "added"
    discriminator: ReleaseDiscriminatorConfig = Field(default_factory=ReleaseDiscriminatorConfig)


class RRNRelease(RRN):
    config_model = RRNReleaseConfig
