"""The multi-domain study: a mixed-domain baseline, one expert teacher per domain, students distilled from
each sample's in-domain teacher, and the study that runs them all over datasets and seeds."""
from .data import REQUIRED_KEYS, MultiDomainData, Split, load_multidomain, save_multidomain
from .generate import make_multidomain

__all__ = ["REQUIRED_KEYS", "MultiDomainData", "Split", "load_multidomain", "make_multidomain", "save_multidomain"]
