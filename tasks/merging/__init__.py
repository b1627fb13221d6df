"""Merged candidates: the top jobs of one base model merged into one more model. LoRA adapters with
PEFT's `add_weighted_adapter` (`lora`), full fine-tunes as task-vector merges or SLERP (`full`), and the
merge step's library (`merge_step`: fetch the parts, merge, commit a `TrainResult`).

May import `tasks.config`, `tasks.contracts`, `tasks.storage`, `tasks.runtime` and `tasks.training`
(the base model and tokenizer loaders); torch, safetensors and peft inside functions.
"""
