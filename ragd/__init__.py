"""ragd: an agentic RAG orchestration server."""

__version__ = "0.1.0"
