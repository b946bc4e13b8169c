"""The live WebSocket: admission before the upgrade (admission, slots), the wire under each socket,
its loop (session), the protocol's messages, subscriptions and resume; routes in socket."""
