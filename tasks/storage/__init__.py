"""The artifact store: URIs, the file:// and s3:// backends behind one interface, commit / fetch /
verify, `build_once`, the key layout and Airflow connections.

The only package that knows URI schemes. May import the standard library, `tasks.runtime.step`'s
errors and, inside functions, boto3.
"""
