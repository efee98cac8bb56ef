"""Temporal and spatial transforms of VAANet's data pipeline (docs/release.md, "One sample")."""
from .temporal import TSN, loop_pad
from .spatial import (TrainSpatialTransform, EvalSpatialTransform, corner_crop_box,
                      center_crop_box, scale_short_side)

__all__ = ["TSN", "loop_pad", "TrainSpatialTransform", "EvalSpatialTransform",
           "corner_crop_box", "center_crop_box", "scale_short_side"]
