"""gunicorn's settings for the web processes of a many-process deployment: ``gunicorn wsgi:app`` reads
this file from the working directory (https://docs.gunicorn.org/en/stable/configure.html).

Each process serves requests only; workers and the scheduler run as ``flask --app wsgi worker``. The
threaded worker class with ``WEB_THREADS`` threads matches the capacity limit of :mod:`app.web.capacity`
(a quarter of the threads kept for Graph's deliveries). gunicorn's threaded workers hold idle keep-alive
connections in an event loop, but a client that trickles its request head ties up a thread: run the
web processes behind a reverse proxy that buffers requests (nginx, a cloud load balancer), as
gunicorn's deployment guide says (https://docs.gunicorn.org/en/stable/deploy.html). ``python -m app``
(waitress) stands up to such clients by itself, and suits a one-host deployment.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_PROCESSES", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
worker_connections = int(os.environ.get("WEB_MAX_CONNECTIONS", "1000"))
timeout = 30  # a request thread stuck this long is a bug: the worker is restarted
graceful_timeout = 30
keepalive = 5
limit_request_line = 8190
limit_request_fields = 100
