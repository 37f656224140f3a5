"""What both backends share, with no sockets and no processes: the handler
API, the request pipeline, request and response bodies, the server's
arguments and the RAPI test responder."""
