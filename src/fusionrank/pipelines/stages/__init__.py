"""The stages of ``fusionrank run``, in order, each a function of its own section of the
config and typed inputs, returning typed outputs (``run.py`` only orders them):

- :mod:`~fusionrank.pipelines.stages.embed`: the dataset's content vectors;
- :mod:`~fusionrank.pipelines.stages.models`: each single model fitted, evaluated, saved;
- :mod:`~fusionrank.pipelines.stages.features`: candidates and the feature tables;
- :mod:`~fusionrank.pipelines.stages.ranker`: the LightGBM ranker, its metrics, the ablation;
- :mod:`~fusionrank.pipelines.stages.report`: ``report.md``, ``report.html`` and plots.

:mod:`~fusionrank.pipelines.stages.inputs` says where a stage (or a remote worker) finds
the run's dataset, split, content and saved models.
"""
