"""What the tunerflow pages in the Airflow UI show, read from the artifact store: the experiments and
their runs, a run (leaderboard, curves, answers side by side, exports, promotion), a job, the model
registries and the datasets. Each page has a pydantic view model and a plain function that builds it
from a store root, so the pages are tested and benchmarked without Airflow or a browser
(`plugins/tunerflow_ui/` renders them).

Light: the api-server imports it, heavy modules never. May import `tasks.config`, `tasks.contracts`,
`tasks.storage`, `tasks.runtime`, `tasks.data`, `tasks.scoring`, `tasks.registry`, `tasks.search` and
`tasks.pipeline`.
"""
