"""The multi-domain assignment data: loading with validation, saving, and generating look-alikes."""
from kdtrack.data.generate import make_multidomain
from kdtrack.data.multidomain import (
    REQUIRED_KEYS,
    MultiDomainData,
    Split,
    load_multidomain,
    save_multidomain,
)

__all__ = [
    "REQUIRED_KEYS",
    "MultiDomainData",
    "Split",
    "load_multidomain",
    "make_multidomain",
    "save_multidomain",
]
