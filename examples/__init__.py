"""Runnable kinflow workflows: Hatchet's examples with only the imports changed.

Each is run by an end-to-end test (tests/e2e/test_sdk.py); pods import them as
`examples.<name>:<attribute>` from the project root.
"""
