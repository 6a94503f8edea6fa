The sans-I/O Raft consensus core and its deterministic simulator.
