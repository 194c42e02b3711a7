"""The process preference model: an LM backbone with a scalar head."""
