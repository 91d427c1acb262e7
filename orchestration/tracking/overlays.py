"""Overlay figures for the MLflow artifact viewer: titled panels and a class legend.

rrn_core's `side_by_side` strip is three untitled 96-px panels: in the UI nobody can
tell prediction from ground truth or which colour is which class. This figure puts
image / ground truth / prediction side by side, each titled and scaled up to a
readable size (nearest-neighbour, so masks stay crisp), with a legend of the
classes that appear and the prediction's pixel accuracy on the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from rrn_core.constants import IGNORE_INDEX
from rrn_core.data.palette import voc_palette
from rrn_core.visualize import overlay

#: Each panel is drawn at least this many pixels wide.
MIN_PANEL_PX = 320


def overlay_figure(image: np.ndarray, gt: np.ndarray, pred: np.ndarray,
                   class_names: Sequence[str], path: str | Path, title: str = "") -> None:
    """Write image | ground truth | prediction with titles and a class legend as a PNG."""
    num_classes = len(class_names)
    h, w = image.shape[:2]
    scale = max(1, int(np.ceil(MIN_PANEL_PX / max(w, 1))))
    dpi = 100
    panel_w = w * scale / dpi
    panel_h = h * scale / dpi
    fig = Figure(figsize=(3 * panel_w + 0.6, panel_h + 1.2), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    gt_arr, pred_arr = np.asarray(gt), np.asarray(pred)
    valid = gt_arr != IGNORE_INDEX
    acc = float((gt_arr[valid] == pred_arr[valid]).mean()) if valid.any() else float("nan")
    panels = [("image", image), ("ground truth", np.asarray(overlay(image, gt_arr, num_classes))),
              (f"prediction (pixel acc {acc:.2f})", np.asarray(overlay(image, pred_arr, num_classes)))]
    for ax, (name, picture) in zip(axes, panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.set_axis_off()
    palette = voc_palette(256) / 255.0
    present = sorted({int(v) for v in np.unique(np.concatenate([gt_arr.ravel(), pred_arr.ravel()]))
                      if 0 <= v < num_classes})
    handles = [Patch(facecolor=palette[c], edgecolor="black", label=str(class_names[c]))
               for c in present]
    if (~valid).any():
        handles.append(Patch(facecolor="none", edgecolor="black", label="ignored (image shows)"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=9,
                   frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86 if title else 0.92, bottom=0.1, wspace=0.04)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
