"""What a worker exposes to operators: metrics, consumer lag, online hit rate, /users pages (`install.py`)."""
