"""filmmtl: one FiLM-conditioned network for multiple and mixed image tasks (Takeda & Yanai)."""
__version__ = "0.1.0"
