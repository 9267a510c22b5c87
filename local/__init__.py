"""The local run: a CPU backend speaking SGLang's API, local endpoints, `make demo`."""
