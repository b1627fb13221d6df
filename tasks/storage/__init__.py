"""The artifact store: URIs (`uris`), the file:// and s3:// backends behind one interface (`backend`,
`file_backend`, `s3_backend`, with the client in `s3`), commit / fetch / verify (`manifests`), the sha256
check of every local copy (`mirror`), `build_once` (`shared`), the key layout, Airflow connections and
masking every credential read in a task log (`masking`).
`store` is the one import the rest of the tree needs.

The only package that knows URI schemes. May import `tasks.runtime.errors` only; boto3 and
filelock inside functions.
"""
