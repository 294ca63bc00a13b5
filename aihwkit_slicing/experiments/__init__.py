"""Experiments on networks: tasks and bundled models, drift sweeps (in-process or on
Dask), their records, metrics and plots, and measured layer sensitivities.
"""
