import os
import tempfile

import pytest
import torch

# Every test writes its caches into a private folder, never into the user's ~/.cache.
os.environ.setdefault("FILMMTL_CACHE", tempfile.mkdtemp(prefix="filmmtl-test-cache-"))
os.environ.setdefault("FILMMTL_PROFILE", "smoke")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
