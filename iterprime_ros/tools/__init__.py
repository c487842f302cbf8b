"""Offline tools: CLI, bag replay and player, evaluation, the synthetic world, benchmarks, demo.

They import the runtime (core, models, pipeline, ros); the runtime never imports them
(test/package/test_layout.py).
"""
