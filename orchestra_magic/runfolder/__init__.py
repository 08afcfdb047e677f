"""The run folder, the file bus: its layout, the local store and the remote (fsspec) store."""
