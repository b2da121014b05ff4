"""Evaluation: the paper's metrics as evaluators over sampled val layouts, and Sec. 3's experiment.

  registry.py      the evaluators by name (big_vision's evaluators/common.py role), metric selection
  common.py        EvalError, Settings, Target, SampleBatch, the Evaluator base class
  fid.py diversity.py cas.py yolo.py mask_entropy.py alignment.py    one evaluator per metric
  inception_features.py   Inception features streamed into running statistics (FID, SceneFID)
  driver.py        samples the val layouts once and feeds every evaluator; `evaluate_layouts`
  report.py        metrics.json (strict JSON) and metrics.md
  mask_clarity.py  the mask-clarity experiment (tainted masks, one driver pass per τ), curve_plot.py
"""
from lama_jax.evaluation.common import EvalError, Evaluator, SampleBatch, Settings, Target
from lama_jax.evaluation.driver import evaluate, evaluate_layouts
from lama_jax.evaluation.registry import EVALUATORS, METRICS

__all__ = ['EVALUATORS', 'METRICS', 'EvalError', 'Evaluator', 'SampleBatch', 'Settings', 'Target',
           'evaluate', 'evaluate_layouts']
