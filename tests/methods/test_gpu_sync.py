"""On a GPU, a method's forward must not make the host wait for the device.

torch's sync debug mode reports every synchronising CUDA call (`.item()`,
boolean-mask indexing, `nonzero`, a host copy); the CPU twin of this test counts
the same calls by patching torch.Tensor (tests/methods/test_methods.py).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from rrn_core.methods import StepContext
from rrn_core.methods.build import build_method

from method_lists import semi_supervised_methods
from test_methods import NUM_CLASSES, make_batch, tiny_config


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", semi_supervised_methods())
@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_forward_has_no_host_sync_on_cuda(name: str, amp: torch.dtype | None) -> None:
    if amp is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip(reason="this GPU has no bf16")
    method = build_method(tiny_config(name, conf_thresh=0.0, tau_region=0.0), NUM_CLASSES).cuda().train()
    batch = {k: {kk: v.cuda() for kk, v in d.items()} for k, d in make_batch().items()}
    ctx = StepContext(step=5, total_steps=10, epoch=2.0)
    with torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None):
        method(batch, ctx)  # warm-up: cuDNN autotuning and lazy init may sync once
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                method(batch, ctx)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    assert syncs == [], syncs
