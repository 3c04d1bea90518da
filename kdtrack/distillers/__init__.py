"""Training objectives, one per module behind one interface (base.Distiller): the logit methods chosen by
name here, SimKD (simkd.py) built from the two networks it connects."""
from .anneal_cosine import AnnealCosine
from .anneal_jafari import AnnealJafari
from .base import Distiller
from .ce import CrossEntropy
from .kd import HintonKD

DISTILL_METHODS = ("kd", "anneal-cosine", "anneal-jafari")


def make_distiller(method: str, epochs: int, alpha=0.5, temperature=9.0) -> Distiller:
    """The objective for `method`: "ce" (plain training) or one of DISTILL_METHODS. For "kd", alpha and
    temperature may be sequences with one value per model of the stack."""
    if method == "ce":
        return CrossEntropy(epochs)
    if method == "kd":
        return HintonKD(epochs, alpha, temperature)
    if method == "anneal-cosine":
        return AnnealCosine(epochs, alpha, temperature)
    if method == "anneal-jafari":
        return AnnealJafari(epochs, temperature)
    raise ValueError(f"unknown method {method!r}; choose from ce, {', '.join(DISTILL_METHODS)}")


__all__ = ["Distiller", "DISTILL_METHODS", "make_distiller", "CrossEntropy", "HintonKD", "AnnealCosine", "AnnealJafari"]
