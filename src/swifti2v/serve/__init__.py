"""`swifti2v serve`: a headless HTTP API over a job queue kept in a database (SQLite, or PostgreSQL shared by
several hosts), with one worker process per device. app.py is the HTTP side, queue.py the database, worker.py
the processes that run jobs, server.py puts them together; swifti2v.client drives it from Python.
"""
