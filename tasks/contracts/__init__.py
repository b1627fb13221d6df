"""The typed contracts between steps: every step's job spec and result (prepare, train, evaluate, export,
check_export), the planned entries XCom carries, the run info, the selection and the promotion decision.

Producers build these models and consumers read their attributes, so a key is spelled once. A model
serializes exactly the fields it was given (`Contract`), so `model_dump(mode="json")` is the JSON stored
and passed today, and a spec written by an earlier version loads (or is refused, naming the field and
what to do).

Light: the Airflow worker imports it. May import pydantic and `tasks.config` only.
"""
