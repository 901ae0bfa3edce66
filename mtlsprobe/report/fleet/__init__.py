"""Fleet roll-up for `mtlsprobe summarize`: many agents' reports in, one picture out.

reading   paths, folders, stdin, gzip -> JSON documents, streamed (malformed lines counted)
records   a document (full report or jsonl line) -> compact per-result rows
sites     --site-map CSV and host addresses -> a site name per agent
aggregate rows -> per-agent state (latest result per target x route) -> FleetSummary
render    FleetSummary -> table | json | markdown | csv

Memory grows with the number of agents (one small state each), never with the number of
reports: documents are dropped as soon as their rows are folded in.
"""
