"""p(domain | x): how likely each domain is to have drawn a point, for students that learn from every
domain's teacher at once (distillers.domain_mixture)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .data import Split


def domain_posterior(fit: Split) -> Callable[[np.ndarray], Tensor]:
    """An estimate of p(domain | x) from the points and domains a student trains on: a multinomial logistic
    regression (L2, C = 1), whose columns are the sorted domains. Its form is exact when the domains are
    Gaussians of one shared covariance, as the assignment's are (kdtrack.multidomain.generate)."""
    from sklearn.linear_model import LogisticRegression  # scikit-learn takes a second to import: only here

    model = LogisticRegression(max_iter=1000).fit(fit.x, fit.d)
    return lambda x: torch.from_numpy(model.predict_proba(x)).float()
