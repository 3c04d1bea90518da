"""Hinton KD from the domain experts mixed by p(domain | x): the distribution-weighted combining rule of
Mansour, Mohri and Rostamizadeh ("Domain Adaptation with Multiple Sources", NeurIPS 2008), used as the
teacher. Guo, Shah and Barzilay ("Multi-Source Domain Adaptation with Mixture of Experts", EMNLP 2018) weigh
domain experts per example in the same spirit.

Each sample's target is sum_d p(d | x) p_d(y | x), every expert's class distribution weighted by how likely
its domain is at the sample's point, instead of the sample's own expert alone. Where domains overlap, the
experts disagree and the student cannot see the domain; learning from the expert of whichever domain
happened to draw a sample makes its targets as noisy as the labels there, while the mixture is what the
student should predict there: the experts' estimate of p(y | x). The loss is Hinton's on those targets,
(1 - alpha) CE + alpha T^2 KL(mixture_T || student_T), with the mixture's log-probabilities as its logits.
"""
from collections.abc import Callable

import torch
from torch import Tensor

from .kd import HintonKD


class DomainMixtureKD(HintonKD):
    min_domains = 2

    def teacher_targets(self, logits: Tensor, domains: Tensor, domain_posterior: Callable[[], Tensor]) -> Tensor:
        """log sum_d p(d | x) softmax(teacher_d(x)), (M, N, C) from logits (M, D, N, C)."""
        weights = domain_posterior().T.unsqueeze(-1)  # (D, N, 1)
        return torch.logsumexp(torch.log_softmax(logits, dim=-1) + torch.log(weights), dim=1)
