"""Designing tables and their use: per-level errors and noise-aware encodings, the table
optimizer, per-layer assignments, and allocation of tables under a device budget.
"""
