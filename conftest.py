"""Test-wide settings, also for the notebooks that nbval runs (their kernels inherit this environment)."""
import os
import tempfile

os.environ.setdefault("FILMMTL_PROFILE", "smoke")        # notebooks' profile="auto" -> smoke
os.environ.setdefault("FILMMTL_HEADLESS", "1")          # the explorer draws its static grid
os.environ.setdefault("FILMMTL_OUTPUT", tempfile.mkdtemp(prefix="filmmtl-test-out-"))
os.environ.setdefault("FILMMTL_CACHE", tempfile.mkdtemp(prefix="filmmtl-test-cache-"))
# The student copies have blanks (raise NotImplementedError): nbval runs their solution notebooks instead.
collect_ignore_glob = ["notebooks/exercises/*"]
