"""Pure conversion steps, each (source, spec) -> artifact directory. Heavy imports stay inside functions."""
