"""tunerflow inside the Airflow UI: a FastAPI app mounted under `/tunerflow` on Airflow's api-server,
with pages for experiments, runs, jobs, models, datasets and model comparisons, linked into Airflow's
navigation and onto runs and task instances as external views.

- `plugin.TunerflowPlugin` is what Airflow loads (the `airflow.plugins` entry point in pyproject.toml);
- `app.create_app()` builds the FastAPI app; `routes/` holds one router per page family;
- `auth` resolves the caller's Airflow identity (the UI's session cookie or a bearer token) and checks
  it against Airflow's auth manager: reading needs read access to the tunerflow DAGs, actions need edit;
- `rendering` is the one Jinja environment (autoescaping on: text from confs, datasets and answers is
  always escaped) and the page helpers; `templates/` and `static/` ship inside the package (Chart.js is
  vendored in `static/vendor/`, so the pages work offline).

What a page shows is built by `tasks.console` from the artifact store; this package only renders it.
"""
