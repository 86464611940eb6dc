"""The daemon's home: where its files live, and how clients discover a running daemon."""
