"""The job queue: rows in a database, not state in memory, so a server killed at any moment loses nothing.

SQLite under the data directory by default (one server per file: `serve` holds a lock on it); PostgreSQL
(`postgresql://...`) for several servers on several hosts sharing one queue. A worker claims the oldest queued
job (or a running job whose lease ran out: its host died) with `SELECT ... FOR UPDATE SKIP LOCKED` and a
compare-and-set update, then keeps the lease alive with heartbeats; every state change a worker makes is
conditional on still holding the lease, so a job is finished by exactly one worker. Every claim is also an
`attempts` row, closed with how it ended.

States: queued -> running -> done | failed | cancelled; running -> queued when a worker dies or errs and
retries are left.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")

metadata = sa.MetaData()
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False, index=True),  # a hash of the submitting token
    sa.Column("kind", sa.String(16), nullable=False),  # generate | refine
    sa.Column("options", sa.Text, nullable=False),  # JSON: the validated options, CLI names
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("created", sa.Float, nullable=False, index=True),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker", sa.String(128)),  # the worker holding the lease (host/server/device/pid)
    sa.Column("lease_until", sa.Float),
    sa.Column("cancel", sa.Boolean, nullable=False, default=False),
    sa.Column("progress", sa.Text),  # JSON {bar: [done, total]}
    sa.Column("seconds", sa.Text),  # JSON {stage: seconds}, from the run's report
    sa.Column("error", sa.Text),
)
attempts = sa.Table(
    "attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(32), nullable=False, index=True),
    sa.Column("worker", sa.String(128), nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("ended", sa.Float),
    sa.Column("outcome", sa.Text),  # done | cancelled | failed: ... | lost: ... (the worker died or the lease ran out)
)


def database_url(db: str | None, data_dir: Path) -> str:
    """`--db`: none -> SQLite in the data directory; postgresql://... -> the psycopg driver."""
    if not db:
        return f"sqlite:///{(data_dir / 'queue.sqlite').resolve()}"
    for prefix in ("postgresql://", "postgres://"):
        if db.startswith(prefix):
            return "postgresql+psycopg://" + db[len(prefix):]
    return db


def new_id() -> str:
    """Unguessable: 128 random bits."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Claim:
    id: str
    kind: str
    options: dict
    attempt: int  # this claim's number (1 = first)


class JobQueue:
    def __init__(self, url: str):
        self.url = url
        self.sqlite = url.startswith("sqlite")
        args = {"connect_args": {"timeout": 60}} if self.sqlite else {"pool_pre_ping": True}
        self.engine = sa.create_engine(url, **args)
        if self.sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_connect)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        metadata.create_all(self.engine)

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """A writing transaction (on SQLite it takes the write lock at once: a read that later writes could
        otherwise fail when another process wrote in between)."""
        with self.engine.connect().execution_options(immediate=True) as c, c.begin():
            yield c

    # -- the HTTP side
    def submit(self, owner: str, kind: str, options: dict, job_id: str | None = None) -> str:
        job_id = job_id or new_id()
        with self._tx() as c:
            c.execute(jobs.insert().values(id=job_id, owner=owner, kind=kind, options=json.dumps(options),
                                           state="queued", created=time.time(), attempts=0, cancel=False))
        return job_id

    def get(self, job_id: str, owner: str | None = None) -> dict | None:
        q = jobs.select().where(jobs.c.id == job_id)
        if owner is not None:
            q = q.where(jobs.c.owner == owner)
        with self.engine.connect() as c:
            row = c.execute(q).mappings().first()
            if row is None:
                return None
            job = _public(row)
            job["position"] = self._position(c, row) if row["state"] == "queued" else None
        return job

    def _position(self, c: sa.Connection, row) -> int:
        """1 = next to run."""
        ahead = sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.state == "queued",
            sa.or_(jobs.c.created < row["created"], sa.and_(jobs.c.created == row["created"], jobs.c.id < row["id"])))
        return int(c.execute(ahead).scalar_one()) + 1

    def list(self, owner: str | None, state: str | None = None, limit: int = 100) -> list[dict]:
        q = jobs.select().order_by(jobs.c.created, jobs.c.id).limit(limit)
        if owner is not None:
            q = q.where(jobs.c.owner == owner)
        if state is not None:
            q = q.where(jobs.c.state == state)
        with self.engine.connect() as c:
            return [_public(r) for r in c.execute(q).mappings()]

    def queued_count(self, owner: str) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(jobs).where(
                jobs.c.owner == owner, jobs.c.state.in_(("queued", "running")))).scalar_one())

    def cancel(self, job_id: str, owner: str | None) -> str | None:
        """A queued job is dropped at once; a running one is flagged and stops between steps (its worker marks it
        cancelled). Returns the state after the request, None for an unknown job."""
        with self._tx() as c:
            cond = [jobs.c.id == job_id] + ([jobs.c.owner == owner] if owner is not None else [])
            row = c.execute(jobs.select().where(*cond).with_for_update()).mappings().first()
            if row is None:
                return None
            if row["state"] == "queued":
                c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "queued")
                          .values(state="cancelled", finished=time.time(), error="cancelled before it started"))
                return "cancelled"
            if row["state"] == "running":
                c.execute(jobs.update().where(jobs.c.id == job_id).values(cancel=True))
            return row["state"]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)).all()
        return {state: 0 for state in STATES} | {s: int(n) for s, n in rows}

    def stage_seconds(self) -> dict[str, tuple[float, int]]:
        """Per stage: (total seconds, jobs) over finished jobs (the Prometheus summary)."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(jobs.c.seconds).where(jobs.c.state == "done")).scalars().all()
        out: dict[str, tuple[float, int]] = {}
        for text in rows:
            for stage, s in json.loads(text or "{}").items():
                total, n = out.get(stage, (0.0, 0))
                out[stage] = (total + float(s), n + 1)
        return out

    # -- the worker side
    def claim(self, worker: str, lease_s: float) -> Claim | None:
        """The oldest queued job, or a running one whose lease ran out (its worker's host died), now held by
        `worker` for `lease_s` seconds."""
        now = time.time()
        claimable = sa.or_(jobs.c.state == "queued", sa.and_(jobs.c.state == "running", jobs.c.lease_until < now))
        with self._tx() as c:
            q = (sa.select(jobs.c.id, jobs.c.worker, jobs.c.state).where(claimable)
                 .order_by(jobs.c.created, jobs.c.id).limit(1).with_for_update(skip_locked=True))
            row = c.execute(q).first()
            if row is None:
                return None
            if row.state == "running":  # taken over: the previous attempt is lost
                self._close_attempt(c, row.id, row.worker, "lost: its lease ran out", now)
            done = c.execute(jobs.update().where(jobs.c.id == row.id, claimable).values(
                state="running", worker=worker, lease_until=now + lease_s, attempts=jobs.c.attempts + 1,
                started=sa.func.coalesce(jobs.c.started, now)))
            if done.rowcount != 1:  # another worker got it first (SQLite has no row locks)
                return None
            c.execute(attempts.insert().values(job=row.id, worker=worker, started=now))
            job = c.execute(jobs.select().where(jobs.c.id == row.id)).mappings().one()
        return Claim(job["id"], job["kind"], json.loads(job["options"]), job["attempts"])

    def heartbeat(self, job_id: str, worker: str, lease_s: float, progress: dict | None) -> str:
        """Extend the lease and store the progress: "ok", "cancel" (the user asked) or "lost" (the lease is no
        longer ours: stop without writing anything more)."""
        values = {"lease_until": time.time() + lease_s}
        if progress is not None:
            values["progress"] = json.dumps(progress)
        with self._tx() as c:
            done = c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.worker == worker,
                                                 jobs.c.state == "running").values(**values))
            if done.rowcount != 1:
                return "lost"
            return "cancel" if c.execute(sa.select(jobs.c.cancel).where(jobs.c.id == job_id)).scalar_one() else "ok"

    def finish(self, job_id: str, worker: str, state: str, *, error: str | None = None,
               seconds: dict | None = None, progress: dict | None = None) -> bool:
        """done / failed / cancelled, only while `worker` holds the job; False when it does not any more."""
        assert state in FINAL
        now = time.time()
        values = {"state": state, "finished": now, "error": error, "lease_until": None}
        if seconds is not None:
            values["seconds"] = json.dumps(seconds)
        if progress is not None:
            values["progress"] = json.dumps(progress)
        with self._tx() as c:
            ok = self._if_held(c, job_id, worker, values)
            if ok:
                self._close_attempt(c, job_id, worker, state if error is None or state == "cancelled"
                                    else f"failed: {error}", now)
        return ok

    def release(self, job_id: str, worker: str, reason: str, retries: int) -> str | None:
        """The attempt failed (an error, or the worker died): back to the queue while retries are left, else
        failed with `reason`. Returns the new state, None when `worker` no longer held the job."""
        now = time.time()
        with self._tx() as c:
            row = c.execute(jobs.select().where(jobs.c.id == job_id)).mappings().first()
            if row is None or row["worker"] != worker or row["state"] != "running":
                return None
            state = "cancelled" if row["cancel"] else "queued" if row["attempts"] <= retries else "failed"
            values = {"state": state, "lease_until": None, "error": "cancelled" if state == "cancelled" else reason}
            values |= {"worker": None} if state == "queued" else {"finished": now}
            self._if_held(c, job_id, worker, values)
            self._close_attempt(c, job_id, worker, f"lost: {reason}", now)
        return state

    def held_by(self, worker: str) -> list[str]:
        with self.engine.connect() as c:
            return list(c.execute(sa.select(jobs.c.id).where(jobs.c.worker == worker,
                                                              jobs.c.state == "running")).scalars())

    def requeue_running(self, reason: str, retries: int) -> list[str]:
        """At the start of a server that owns the queue alone (SQLite): every running job's worker is gone."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(jobs.c.id, jobs.c.worker).where(jobs.c.state == "running")).all()
        for job_id, worker in rows:
            self.release(job_id, worker, reason, retries)
        return [r[0] for r in rows]

    def attempts_of(self, job_id: str) -> list[dict]:
        with self.engine.connect() as c:
            q = attempts.select().where(attempts.c.job == job_id).order_by(attempts.c.id)
            return [dict(r) for r in c.execute(q).mappings()]

    @staticmethod
    def _if_held(c: sa.Connection, job_id: str, worker: str, values: dict) -> bool:
        done = c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.worker == worker,
                                             jobs.c.state == "running").values(**values))
        return done.rowcount == 1

    @staticmethod
    def _close_attempt(c: sa.Connection, job_id: str, worker: str, outcome: str, now: float) -> None:
        c.execute(attempts.update().where(attempts.c.job == job_id, attempts.c.worker == worker,
                                          attempts.c.ended.is_(None)).values(ended=now, outcome=outcome))


def _sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_begin, not by the driver
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (status requests) never wait for the workers' writes
    cur.execute("PRAGMA synchronous=FULL")  # a committed state change survives a power cut
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")


def _public(row) -> dict:
    """The row as the API shows it."""
    return {"id": row["id"], "kind": row["kind"], "state": row["state"], "options": json.loads(row["options"]),
            "created": row["created"], "started": row["started"], "finished": row["finished"],
            "attempts": row["attempts"], "worker": row["worker"], "cancel_requested": bool(row["cancel"]),
            "progress": json.loads(row["progress"] or "{}"), "seconds": json.loads(row["seconds"] or "{}"),
            "error": row["error"]}
