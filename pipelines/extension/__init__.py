"""Long-video extension: timelines, seams and colour anchoring, the segment store (manifest, resume)."""
