import os

import pytest
import torch

# 2 threads on the 2-core CI machine; FILMMTL_TEST_THREADS=1 when another job already holds a core.
torch.set_num_threads(int(os.environ.get("FILMMTL_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
