"""Dataset preparation: sources, formats, row checks and filters, PII, decontamination, splitting,
token counts, the dataset card and the dataset registry.

May import `tasks.config`, `tasks.storage`, `tasks.runtime` and `tasks.training.base_models` (for
tokenizers). Heavy libraries (datasets, pyarrow, transformers) are imported inside functions.
"""
