"""The `cjo` command: journeys offline (validate, compile, graph, simulate), the local
stack (`cjo dev`, `cjo worker`, `cjo dispatcher`) and a client of the HTTP API."""
