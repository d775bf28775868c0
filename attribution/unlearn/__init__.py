"""Targeted unlearning of works from a causal LM, exact unlearning (SISA), and the certificate.

Public names::

    run_unlearning, load_model                     # one run: model folder -> new folder + certificate
    UnlearnConfig, METHODS, unlearn, DivergedError # approximate unlearning (ga, gd, kl, npo, simnpo, calibrated)
    build_data, UnlearnData                        # forget / retain / holdout sets
    EvalConfig, Targets, evaluate, build_certificate
    rouge_l, lcs_length, auc, privleak, min_k_scores, perplexity, verbatim_memorisation
    SISAConfig, sisa_train, sisa_unlearn, load_sisa
    BigramReference                                # the retrain-like membership level (calibrated's target)
    attribution_share                              # the works' attribution share (certificate)
    load_hf, save_hf                               # Hugging Face causal LMs from a local folder

torch is imported only inside functions.
"""

from .certificate import EvalConfig, Targets, build_certificate, evaluate
from .data import UnlearnData, build_data
from .methods import METHODS, PRESETS, DivergedError, UnlearnConfig, method_loss, preset, unlearn
from .metrics import auc, lcs_length, min_k_scores, perplexity, privleak, rouge_l, verbatim_memorisation
from .run import load_model, run_unlearning
from .hf import load_hf, save_hf
from .reference import BigramReference
from .share import attribution_share
from .sisa import SISAConfig, load_sisa, sisa_train, sisa_unlearn

__all__ = [
    "EvalConfig", "Targets", "build_certificate", "evaluate", "UnlearnData", "build_data", "METHODS",
    "DivergedError", "PRESETS", "preset", "UnlearnConfig", "method_loss", "unlearn", "auc", "lcs_length", "min_k_scores",
    "perplexity", "privleak", "rouge_l", "verbatim_memorisation", "load_model", "run_unlearning",
    "SISAConfig", "load_sisa", "sisa_train", "sisa_unlearn", "BigramReference", "attribution_share", "load_hf",
    "save_hf",
]
