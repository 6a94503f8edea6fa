The node: graft node run, twist graft, the key/value HTTP API, the graft CLI, HTTP and AMP peer transports.
