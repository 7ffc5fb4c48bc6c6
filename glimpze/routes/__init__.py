"""HTTP handlers, thin: parse, authorize, call a service, return a Struct. One module per area."""
