"""Dataset preparation: sources, formats, row checks and filters, PII, decontamination, splitting,
token counts, the dataset card and the dataset registry.

The modules, from the bottom up:

- rows, fields: reason-coded row errors and normalisation; reading a source row's fields.
- plugin_registry, plugin_discovery, plugins: data plugins (formats and filters) registered, found,
  looked up. plugins is the module plugin authors and the rest of `tasks` import.
- chat_formats, preference_format, vision_format, formats, format_detection: one converter per format,
  `convert`, `columns`, and `auto` detection; vision_images: a vision row's images resolved and checked.
- sources (files, S3, Hugging Face as shards), pii, token_counts, length_stats, decontaminate, splitting:
  the pieces of the per-row work.
- scan (the per-shard work in worker processes), pool, parts (sources, formats, content version),
  row_plan, eval_overlap, prep_report, card (with card_plot): the prepare step, put together in
  preparation.
- dataset_registry: registered datasets and their prepared versions.
- row_lookup: one source row read again by id, for the Datasets pages.

May import `tasks.config`, `tasks.contracts`, `tasks.storage`, `tasks.runtime`,
`tasks.training.base_models` (for tokenizers) and `tasks.training.image_tokens` (the tokens a vision
model gives each image). Heavy libraries (datasets, pyarrow, tokenizers,
matplotlib) are imported inside functions.
"""
