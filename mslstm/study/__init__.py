"""The comparison study: registered models x seeds x budgets on the same data, with intervals and paired
differences; the paper's ablation is its ``ablation`` preset, ``mslstm compare`` any list of models.

One job per module:

- :mod:`~mslstm.study.budget`: the cells (model, seed, budget) and the config each one trains with (paired
  design; equal steps; equal seconds with a planned step count).
- :mod:`~mslstm.study.grid`: running the cells, one MLflow child run each under the study's parent run;
  resuming an interrupted study.
- :mod:`~mslstm.study.stats`: mean and 95 % t interval over seeds; paired differences.
- :mod:`~mslstm.study.report`: the tables (Markdown, CSV, JSON) with the cost columns.
- :mod:`~mslstm.study.figures`: bars with error bars, the radar (Figure 4) with intervals, the paired
  differences, the layer outputs (Figure 5).
- :mod:`~mslstm.study.estimate`: the time a study will take (``--dry-run``).

Doors: ``mslstm study`` / ``compare`` / ``ablation`` (CLI), ``study/dvc.yaml`` (DVC), ``pipelines/study.py``
(Kubeflow, ParallelFor over the cells). docs/results.md holds the write-up.
"""
