"""Unit tests of the operator's pure parts: decide(), build_job(), the CRD file.

Real: the decision code, the Job builder, the CRD YAML as shipped, kopf's
handler registry. Faked: everything the API server would give us. Runs,
Jobs and pods are hand-written dicts shaped like the API's JSON (the builders
below), and time is a fixed `NOW` passed in, so timing rules are exact.
Nothing here opens a connection.
"""
