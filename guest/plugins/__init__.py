"""Engine plugins (made locally, never run: guest/plugins/store.py)."""
