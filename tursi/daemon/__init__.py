"""tursid: the control API, state, worker supervisor, sampler and log collection in one aiohttp process."""
