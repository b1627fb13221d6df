"""Experiment configuration: the pydantic models of a conf (one module per area), the model catalog,
and the trigger form's Params generated from them.

Light: imported when a DAG is parsed and by every step. May import pydantic, yaml and `tasks.storage`
names only; never torch, transformers or boto3 at import time.
"""
