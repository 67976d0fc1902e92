"""RegMix (Liu et al., 2024): candidate mixtures for proxy runs, regression from mixture to loss, search."""

from mixers.regmix.fit import FitQuality, ProxyRuns, RegMixModel, RegMixResult, fit_model, run_regmix
from mixers.regmix.regressors import LightGBMRegressor, RidgeRegressor, make_regressor
from mixers.regmix.sampling import regmix_bounds, sample_mixtures, token_prior
from mixers.regmix.search import SearchResult, search

__all__ = ["FitQuality", "LightGBMRegressor", "ProxyRuns", "RegMixModel", "RegMixResult", "RidgeRegressor",
           "SearchResult", "fit_model", "make_regressor", "regmix_bounds", "run_regmix", "sample_mixtures",
           "search", "token_prior"]
