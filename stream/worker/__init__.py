"""The Faust worker: `main.build` creates the app (`app.py`) and installs its agents, one module each."""
