"""graft: a replicated key/value store on Raft, for Twisted."""
