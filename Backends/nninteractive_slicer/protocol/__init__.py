"""The contract between this project's server and its client: routes, error codes and headers (contract), the
JSON bodies (bodies) and the binary frames (wire). Torch-free: the client runs inside 3D Slicer."""
