"""The live analytics WebSocket."""
