"""Business operations shared by the web adapters and the Celery tasks."""
