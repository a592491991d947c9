"""Framework integrations: ``contrib.django``, ``contrib.flask``, ``contrib.starlette`` (FastAPI).

Each module imports its framework; ``import stratacache`` imports none of them.
"""
