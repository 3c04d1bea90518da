"""Which trial a tune cell keeps, against hand-computed standard errors (a tune run's logged choice
against its trials' scores: tests/test_study.py)."""
import dataclasses

import numpy as np
import pytest

from kdtrack.errors import InputError
from kdtrack.spine.tuning import Trial, choose, gap_standard_error, standard_error

GRID = [{"alpha": 0.0, "temperature": 1.0}, {"alpha": 0.3, "temperature": 9.0}, {"alpha": 0.3, "temperature": 4.0},
        {"alpha": 0.9, "temperature": 1.0}]
SIMPLICITY = ("alpha", "temperature")  # the multi-domain grid's (GridTuneCell.simplicity)


def hits(right: int, n: int, seeds: int = 1) -> np.ndarray:
    """A trial whose students (the same on every seed) get the first `right` of `n` samples right."""
    return np.tile((np.arange(n) < right).astype(float), (seeds, 1))


def choose_trial(grid: list[dict[str, float]], trial_hits: list[np.ndarray], cross_entropy: list[float],
                 rule: str, simplicity: tuple[str, ...] = SIMPLICITY) -> int:
    """The trial `rule` keeps among trials of these values, hits and cross-entropies (the same at each seed)."""
    trials = [Trial(values, list(h.mean(axis=1)), [ce] * len(h), h) for values, h, ce in zip(grid, trial_hits, cross_entropy)]
    return choose(trials, rule, simplicity)


def test_standard_errors_by_hand():
    assert standard_error(0.8, 200) == pytest.approx(0.0282843, abs=1e-7)  # sqrt(0.8 * 0.2 / 200)
    # 100 samples; the best gets 3 more right and none fewer: gaps of 1 on 3 samples, mean 0.03, sample
    # variance (3 * 0.97^2 + 97 * 0.03^2) / 99 = 0.0293939, standard error sqrt(0.0293939 / 100)
    assert gap_standard_error(hits(77, 100), hits(80, 100)) == pytest.approx(0.0171447, abs=1e-7)
    # two seeds, the second ties everywhere: per-sample means of 0.5 on 3 samples, standard error
    # sqrt((3 * 0.485^2 + 97 * 0.015^2) / 99 / 100)
    two_seeds = np.vstack([hits(77, 100)[0], hits(80, 100)[0]])
    assert gap_standard_error(two_seeds, hits(80, 100, seeds=2)) == pytest.approx(0.0085724, abs=1e-7)


def test_alpha_0_is_kept_when_the_distilled_settings_tie_with_it_within_noise():
    # best 0.80 on 200 samples: standard error 0.0283, so anything from 0.7717 up ties with it
    trials = [hits(156, 200), hits(158, 200), hits(156, 200), hits(160, 200)]  # 0.78, 0.79, 0.78, 0.80
    assert choose_trial(GRID, trials, [0.5, 0.45, 0.4, 0.3], "simplest-1se") == 0
    assert choose_trial(GRID, trials, [0.5, 0.45, 0.4, 0.3], "best") == 3


def test_a_distilled_setting_that_wins_beyond_the_noise_is_kept():
    # alpha 0 at 0.77 is 0.03 below the best, more than its standard error 0.0283: the lowest alpha
    # within it, at its lower temperature (0.775), is kept
    trials = [hits(154, 200), hits(158, 200), hits(155, 200), hits(160, 200)]  # 0.77, 0.79, 0.775, 0.80
    assert choose_trial(GRID, trials, [0.5] * 4, "simplest-1se") == 2
    # with twice the samples the standard error is 0.02 (down to 0.78): of the lowest alpha only T 9 ties
    trials = [hits(308, 400), hits(316, 400), hits(310, 400), hits(320, 400)]
    assert choose_trial(GRID, trials, [0.5] * 4, "simplest-1se") == 1


def test_a_trial_exactly_one_standard_error_below_the_best_ties_with_it():
    # 0.80 on 100 samples: standard error exactly 0.04
    assert choose_trial(GRID[:2], [hits(76, 100), hits(80, 100)], [0.5, 0.5], "simplest-1se") == 0
    assert choose_trial(GRID[:2], [hits(75, 100), hits(80, 100)], [0.5, 0.5], "simplest-1se") == 1


def test_the_paired_rule_weighs_the_gap_by_how_often_the_two_trials_disagree():
    """alpha 0 three points below the best on 100 samples: within the best's own standard error (0.04), but
    where the best gets those 3 samples right and no others wrong, the gap's standard error is 0.0171 and
    the distilled trial is kept; where they disagree on 23 samples (13 to 10) it is 0.0481 and alpha 0 is."""
    consistent = [hits(77, 100), hits(80, 100)]
    assert choose_trial(GRID[:2], consistent, [0.5, 0.5], "simplest-1se") == 0
    assert choose_trial(GRID[:2], consistent, [0.5, 0.5], "simplest-paired-1se") == 1
    best = hits(80, 100)
    labels_alone = best.copy()
    labels_alone[0, :13] = 0  # 13 the best gets right and alpha 0 wrong
    labels_alone[0, 80:90] = 1  # 10 the other way
    assert labels_alone.mean() == pytest.approx(0.77)
    assert gap_standard_error(labels_alone, best) == pytest.approx(0.0481055, abs=1e-7)
    assert choose_trial(GRID[:2], [labels_alone, best], [0.5, 0.5], "simplest-paired-1se") == 0


def test_best_breaks_ties_by_cross_entropy_and_annealing_prefers_the_lowest_tau_max():
    assert choose_trial(GRID[:2], [hits(80, 100), hits(80, 100)], [0.4, 0.3], "best") == 1
    taus = [{"temperature": 33.0}, {"temperature": 4.0}, {"temperature": 9.0}]
    # 0.95 on 100 samples: standard error 0.0218, down to 0.9282
    assert choose_trial(taus, [hits(94, 100), hits(93, 100), hits(95, 100)], [0.3] * 3, "simplest-1se", ("temperature",)) == 1
    assert choose_trial(taus, [hits(94, 100), hits(92, 100), hits(95, 100)], [0.3] * 3, "simplest-1se", ("temperature",)) == 2


def test_an_unknown_rule_is_an_error():
    with pytest.raises(InputError, match="tune rule must be one of best, simplest-1se, simplest-paired-1se, got 'lowest'"):
        choose_trial(GRID, [hits(80, 100)] * 4, [0.3] * 4, "lowest")


def test_a_tune_cell_without_a_simpler_trial_keeps_only_the_best():
    """The image study's rate tune has no simplicity order (no learning rate is the simpler) and scores
    from its histories, not sample by sample: `best` is its only rule."""
    from kdtrack.images.cells import BaselineCell, tune_rate
    from kdtrack.images.data import load_digits
    from kdtrack.images.options import recipe

    cell = BaselineCell(data=load_digits(), seeds=(0,), train=recipe("digits", epochs=1), label="alone")
    tune = tune_rate(cell, (0.02, 0.1)).tuned_by
    assert tune.rule == "best" and tune.parent_params()["tune_rule"] == "best"
    with pytest.raises(InputError, match="tune rule simplest-1se: alone-tune has no simpler trial to prefer"):
        dataclasses.replace(tune, rule="simplest-1se")
    with pytest.raises(InputError, match="tune rule must be one of best, simplest-1se, simplest-paired-1se, got 'lowest'"):
        dataclasses.replace(tune, rule="lowest")
