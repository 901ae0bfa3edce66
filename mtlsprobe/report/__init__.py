"""Output: Report building, JSON serialisation, the human table, the ticket body, baselines.

Pure: values in, text or values out. No I/O here; the CLI writes what these return.
"""
