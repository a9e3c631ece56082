"""Stand-in for `make bootstrap`: creates the backend's local state directory."""
import os

os.makedirs("var", exist_ok=True)
print("bootstrap: backend/var is ready")
