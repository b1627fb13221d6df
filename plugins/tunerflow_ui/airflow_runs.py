"""Airflow's side of the run pages: the states of `finetune_experiment` runs from Airflow's metadata DB.

`run_states` is a FastAPI dependency (tests override it, as `stores.store_root`); it gives the pages a
lookup from run ids to states, so `tasks.console` stays free of Airflow. Airflow is imported inside
functions: the pages and their tests also run where no api-server (and no metadata DB) is configured,
and then a run's state is what its files show.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from plugins.tunerflow_ui.auth import EXPERIMENT_DAG
from tasks.console.runs import StateLookup

log = logging.getLogger("tunerflow.ui")


def states_in_db(run_ids: list[str]) -> Mapping[str, str]:
    """{run id: state} of the `finetune_experiment` runs among `run_ids`; empty when the DB cannot be read."""
    if not run_ids:
        return {}
    # Airflow's ORM loads only in the api-server, where the pages run against its DB.
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    query = select(DagRun.run_id, DagRun.state).where(
        DagRun.dag_id == EXPERIMENT_DAG, DagRun.run_id.in_(run_ids)
    )
    try:
        with create_session() as session:
            rows = session.execute(query).all()
    except SQLAlchemyError as error:
        log.warning("run states unavailable, showing the store's: %s", error)
        return {}
    return {run_id: getattr(state, "value", state) for run_id, state in rows if state}


def run_states() -> StateLookup:
    return states_in_db
