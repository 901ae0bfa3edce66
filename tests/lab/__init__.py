"""The middlebox lab: real daemons in network namespaces, probed from an agent namespace."""
