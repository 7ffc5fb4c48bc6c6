"""The /v1 API's routes: thin handlers that parse, authorize, call a service and return a Struct."""
