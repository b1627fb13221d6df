"""Scoring: metrics (evaluate modules), scoring plugins, generation, the LLM judge and the evaluate
step's library.

May import `tasks.config`, `tasks.storage`, `tasks.runtime` and `tasks.training`.
"""
