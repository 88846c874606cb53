"""The fleet side: a collector that archives every trip of many devices through an existing
MQTT broker into a real database, the archive itself, and a fleet simulator.

- ``archive``: schema and migrations (SQLite in WAL mode, PostgreSQL through psycopg 3), the
  durable work queue, devices and incidents.
- ``store``: dumps and reports as files named by their SHA-256.
- ``collector``: MQTT 5 shared subscriptions, trips → jobs → pull, verify, replay, report,
  archive; exactly once across collectors.
- ``sim``: many simulated devices (the real governor and service loop each) in one process.
"""
