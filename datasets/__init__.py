"""Datasets of VAANet: VE-8 / Ekman-6 frames + MFCC audio features."""
from .audio import MFCCCache, mfcc_features, tile_features
from .ve8 import VE8Dataset, DatasetError, EpochSampler, item_rng, order_permutation

__all__ = ["VE8Dataset", "DatasetError", "EpochSampler", "item_rng", "order_permutation",
           "MFCCCache", "mfcc_features", "tile_features"]
