"""Round trips per request: what each run sent to PostgreSQL and to Redis,
counted on the bench's own servers before and after it and divided by the
requests it made.

- Redis: the calls of every command in ``INFO commandstats`` (the counting
  ``INFO`` itself left out). One command is one round trip, a pipeline
  aside (no hot path uses one).
- PostgreSQL: the calls of every statement in ``pg_stat_statements`` on the
  bench's database, ``BEGIN`` and ``COMMIT`` included (``track_utility``),
  each one round trip. The bench's own cluster loads the extension
  (servers.start_postgres); on a server that does not, the count is the
  database's transactions (``pg_stat_database``: commits and rollbacks), and
  the report says so: an autocommit statement is one, a ``BEGIN`` ...
  ``COMMIT`` of any length is one too.
"""

import time

import redis
import sqlalchemy as sa

STATEMENTS = "statements"
TRANSACTIONS = "transactions"


class RoundTrips:
    def __init__(self, database_url: str, redis_url: str):
        self.database = sa.make_url(database_url).database
        # Counted from another database, so the counting is not counted.
        self.engine = sa.create_engine(sa.make_url(database_url).set(database="postgres"),
                                       isolation_level="AUTOCOMMIT")
        self.redis = redis.Redis.from_url(redis_url)
        with self.engine.connect() as conn:
            try:
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                conn.execute(sa.text("SELECT 1 FROM pg_stat_statements LIMIT 1"))
                self.pg_counts = STATEMENTS
            except sa.exc.DBAPIError:  # not in shared_preload_libraries
                self.pg_counts = TRANSACTIONS

    def snapshot(self) -> tuple[int, int]:
        """(Redis commands, PostgreSQL statements or transactions) so far."""
        commands = sum(stats["calls"] for name, stats in self.redis.info("commandstats").items()
                       if name != "cmdstat_info")
        with self.engine.connect() as conn:
            if self.pg_counts == STATEMENTS:
                query = ("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                         "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = :db)")
            else:
                # Backends report their counts at most once a second.
                time.sleep(1.1)
                query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :db"
            statements = int(conn.execute(sa.text(query), {"db": self.database}).scalar_one())
        return commands, statements

    def per_request(self, before: tuple[int, int], requests: int) -> dict:
        after = self.snapshot()
        requests = max(requests, 1)
        return {"redis_per_request": round((after[0] - before[0]) / requests, 2),
                f"pg_{self.pg_counts}_per_request": round((after[1] - before[1]) / requests, 2)}

    def close(self):
        self.engine.dispose()
        self.redis.close()
