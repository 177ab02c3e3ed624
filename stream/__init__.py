"""mindstream's streaming side, grouped by where the code runs.

- `worker/`: inside `mindstream worker`, the Faust app: its agents (interests, recall, catalog, hot swap),
  tables and the releases it serves. `worker/main.py` builds it.
- `monitoring/`: what the worker adds for operators: Prometheus metrics, consumer lag, the online hit rate and
  the HTTP pages.
- `commands/`: the commands a person or a scheduler runs against a cluster (produce, candidates, retrain,
  refresh, rollback, demo...). None of them runs inside the worker.
- here: the topology (`topology.py`: every topic and table, start there) and its message types
  (`messages.py`), the entry point (`cli.py`), settings (`config.py`), the click contract (`events.py`) and what
  the three share (Kafka security options, reading a topic, expected errors).
"""
