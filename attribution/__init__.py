"""Attribution: score how much each training document drove each model output.

Sign convention, everywhere: a score > 0 means including the training example raises the
query's measured output. Public names::

    attribute, AttributionConfig, AttributionResult      # one entry point, all methods
    Task, ClassificationTask, CausalLMTask, hf_causal_lm  # what is attributed
    lds, evaluate_lds, subset_masks                       # measured quality (LDS)
    rollup, holder_shares                                 # scores -> work / holder shares

Only ``tribute.core`` is imported from the rest of tribute; torch is imported where used.
"""

from .api import SIGN, AttributionResult, attribute, load_state_dict
from .config import HESSIANS, METHODS, AttributionConfig
from .lds import LDSResult, evaluate_lds, lds, measure_queries, subset_masks
from .rollup import holder_shares, rollup
from .task import CausalLMTask, ClassificationTask, Task, hf_causal_lm

__all__ = [
    "SIGN", "AttributionResult", "attribute", "load_state_dict", "HESSIANS", "METHODS",
    "AttributionConfig", "LDSResult", "evaluate_lds", "lds", "measure_queries", "subset_masks",
    "holder_shares", "rollup", "CausalLMTask", "ClassificationTask", "Task", "hf_causal_lm",
]
