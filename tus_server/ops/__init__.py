"""Running the server: Prometheus metrics, structured logs, graceful shutdown, and the gunicorn
configuration and worker class (`gunicorn -c python:tus_server.ops.gunicorn_conf`)."""
