"""Metrics logging (JSONL, TensorBoard, console) and reports."""
