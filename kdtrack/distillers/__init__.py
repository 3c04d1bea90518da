"""Training objectives, one per module behind one interface (base.Distiller): the logit methods chosen by
name here, SimKD (simkd.py) built from the two networks it connects."""
from .anneal_cosine import AnnealCosine
from .anneal_jafari import AnnealJafari
from .base import Distiller
from .ce import CrossEntropy
from .domain_mixture import DomainMixtureKD
from .kd import HintonKD

METHODS: dict[str, type[Distiller]] = {"ce": CrossEntropy, "kd": HintonKD, "kd-mixture": DomainMixtureKD,
                                       "anneal-cosine": AnnealCosine, "anneal-jafari": AnnealJafari}
DISTILL_METHODS = tuple(method for method in METHODS if method != "ce")


def make_distiller(method: str, epochs: int, alpha=0.5, temperature=9.0) -> Distiller:
    """The objective for `method`: "ce" (plain training) or one of DISTILL_METHODS, given the options it
    reads; a tunable option may be a sequence with one value per model of the stack."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    kind = METHODS[method]
    given = {"alpha": alpha, "temperature": temperature}
    return kind(epochs, **{name: given[name] for name in kind.options})


def tunable(method: str) -> tuple[str, ...]:
    """The options of `method` that a tuning grid can search in one stack."""
    return METHODS[method].tunable


__all__ = ["Distiller", "DISTILL_METHODS", "METHODS", "make_distiller", "tunable", "CrossEntropy", "HintonKD",
           "DomainMixtureKD", "AnnealCosine", "AnnealJafari"]
