"""Media through PyAV: probing, clip reading on one audio-visual timeline, audio features, the synthetic world."""
