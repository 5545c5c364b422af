"""Serving past one machine: a gateway that speaks reverie's wire protocol to clients, in front of model
replicas that Ray places, starts and watches (`reverie serve --cluster`).

Frames do not go through Ray: each replica is a whole `engine.server.Server` on its own ZeroMQ endpoint,
and the gateway relays a session's messages to the one replica that holds it (one hop, no
serialisation). Ray does placement (one replica per CPU slot or GPU, spread over nodes), discovery, health
and lifecycle. Modules: `replica` (the Ray actor around a `Server`), `pool` (starting, watching and
scaling replicas), `gateway` (the client-facing socket, session affinity and admission across replicas).
Needs the optional `ray` package (`pip install "reverie[cluster]"`).
"""
