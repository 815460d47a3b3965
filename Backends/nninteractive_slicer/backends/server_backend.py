"""What the two server backends share: the remote backend (this project's server) and the official one.

A connection attempt that gets no answer within :data:`CONNECT_TIMEOUT_S` is reported as unreachable;
a reply may take the backend's (longer) read timeout.
"""

CONNECT_TIMEOUT_S = 5.0
