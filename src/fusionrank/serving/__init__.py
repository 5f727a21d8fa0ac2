"""``fusionrank serve``: a finished run behind HTTP (FastAPI on uvicorn).

- :mod:`~fusionrank.serving.state`: the run opened once (:class:`ServedRun`), the lock
  around what changes (added items) and their log;
- :mod:`~fusionrank.serving.schemas`: the typed requests and answers (pydantic);
- :mod:`~fusionrank.serving.app`: the routes and the server;
- :mod:`~fusionrank.serving.client`: :class:`~fusionrank.serving.client.ServeClient`, a small
  client for notebooks (``fr.ServeClient``).

Importing this package (or :mod:`fusionrank`) needs neither FastAPI nor httpx: the modules
that use them are imported when a service starts or a client connects, and say in one
line which extra to install when missing.
"""
