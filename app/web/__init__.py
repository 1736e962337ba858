"""The web pages: server-rendered HTML under `/`, beside the API under `/api/v1`."""
