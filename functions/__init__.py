"""Thin Azure Functions blueprints: read the trigger's input, call one function in `shared/`, map the result."""
